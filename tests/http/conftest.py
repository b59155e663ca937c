"""``mcp-imagegen serve --transport http`` as a real uvicorn subprocess on loopback."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import MCP_IMAGEGEN_BIN
from tests.kserve.conftest import kserve_server  # noqa: F401  (a fixture used here)

#: Polls of /healthz before giving up on a server that does not come up (0.1 s each).
STARTUP_POLLS = 300


#: The headers of a raw MCP POST, as MCP clients send them.
MCP_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
}
#: A raw ``initialize`` request (for tests below the SDK's client).
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's pick on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def toml_value(value: Any) -> str:
    """Render a scalar, list or inline table as TOML (JSON is close enough)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    return json.dumps(value)


def write_toml(path: Path, tables: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``{"server.http": {...}, ...}`` as a TOML file."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class HttpServer:
    """A running ``mcp-imagegen serve --transport http`` child process."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    path: str = "/mcp"
    images: Path = field(default_factory=Path)
    #: "https" when the server has a TLS certificate (``tls_certfile``).
    scheme: str = "http"
    #: How clients check the server's certificate (a context with a test CA).
    verify: ssl.SSLContext | bool = True

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base + self.path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    @asynccontextmanager
    async def session(
        self, *, terminate_on_close: bool = True, **headers: str
    ) -> AsyncIterator[ClientSession]:
        """An initialized MCP client session over streamable HTTP.

        ``terminate_on_close=False`` skips the closing DELETE (which finds no
        listener once the server has stopped).
        """
        async with (
            # The SDK's own timeouts: httpx's default 5 s read timeout would
            # cut a response stream that waits for a slow generation.
            httpx2.AsyncClient(
                headers=headers,
                timeout=httpx2.Timeout(30, read=300),
                verify=self.verify,
            ) as client,
            streamable_http_client(
                self.url, http_client=client, terminate_on_close=terminate_on_close
            ) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def refused_before_binding(
    subprocess_env: dict[str, str],
    tmp_path: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> str:
    """Run ``serve --transport http ARGS``; return its one line of refusal.

    Refused before building anything: exit 2, no component started, nothing bound.
    """
    result = subprocess.run(
        [str(MCP_IMAGEGEN_BIN), "serve", "--transport", "http", *args],
        env={**subprocess_env, **(env or {})},
        cwd=tmp_path / "work",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "server_started" not in result.stderr
    assert "Uvicorn running" not in result.stderr
    return lines[0]


StartServer = Callable[..., HttpServer]


@pytest.fixture
def start_server(
    subprocess_env: dict[str, str], tmp_path: Path
) -> Iterator[StartServer]:
    """Start servers; each waits for ``/healthz`` and is stopped after the test.

    ``start_server(config={"server.http": {...}}, env={...}, args=[...])``;
    ``port`` names where to expect the server when env or flags choose it;
    ``verify`` (an SSL context) checks the certificate of a server with TLS.
    """
    started: list[HttpServer] = []

    def start(
        config: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        args: list[str] | None = None,
        port: int | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> HttpServer:
        name = f"server{len(started)}"
        tables = {k: dict(v) for k, v in (config or {}).items()}
        http = tables.setdefault("server.http", {})
        if port is None:
            # The server listens where the file says unless the test says otherwise
            # (a port given by an environment variable or a flag).
            port = int(http.setdefault("port", free_port()))
        config_file = write_toml(tmp_path / f"{name}.toml", tables)
        log = tmp_path / f"{name}.log"
        with log.open("wb") as errlog:
            process = subprocess.Popen(
                [
                    str(MCP_IMAGEGEN_BIN),
                    "serve",
                    "--config",
                    str(config_file),
                    "--transport",
                    "http",
                    *(args or []),
                ],
                env={
                    **subprocess_env,
                    "MCP_IMAGEGEN_LOGGING__FORMAT": "json",
                    **(env or {}),
                },
                cwd=tmp_path / "work",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errlog,
            )
        server = HttpServer(
            process,
            port,
            log,
            path=str(http.get("path", "/mcp")),
            images=tmp_path / "data" / "mcp-imagegen" / "images",
            scheme="https" if http.get("tls_certfile") else "http",
            verify=verify,
        )
        started.append(server)
        for _ in range(STARTUP_POLLS):
            if process.poll() is not None:
                raise AssertionError(
                    f"server exited with {process.returncode}:\n{server.log_text()}"
                )
            try:
                healthz = httpx.get(server.base + "/healthz", timeout=2, verify=verify)
                if healthz.status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server never answered /healthz:\n{server.log_text()}")

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(15)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
