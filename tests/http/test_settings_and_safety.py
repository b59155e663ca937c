"""``[server.http]`` settings, the exposure check and the draining refusals."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings, settings_from_dict
from mcp_imagegen._http import (
    Lifecycle,
    auth_enabled,
    build_app,
    exposure_problem,
    loop_options,
    transport_security,
)
from mcp_imagegen.errors import ConfigurationError
from tests.conftest import MCP_IMAGEGEN_BIN
from tests.http.conftest import StartServer, free_port, refused_before_binding

pytestmark = pytest.mark.anyio


def http_settings(**http: object) -> Settings:
    return settings_from_dict({"server": {"http": http}})


def test_defaults() -> None:
    http = Settings().server.http
    assert (http.host, http.port, http.path, http.stateless) == (
        "127.0.0.1",
        8000,
        "/mcp",
        True,
    )
    assert http.drain_timeout.total_seconds() == 30
    assert http.public_url is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("images.example.com", "absolute http:// or https:// URL"),
        ("/images", "absolute http:// or https:// URL"),
        ("ftp://images.example.com", "absolute http:// or https:// URL"),
        ("https://alice:hunter2@images.example.com", "must not hold credentials"),
        ("https://images.example.com/?a=1", "must not have a query"),
    ],
)
def test_public_url_must_be_an_absolute_http_url_without_credentials(
    url: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        http_settings(public_url=url)
    message = str(error.value)
    assert "server.http.public_url" in message
    assert problem in message
    assert "hunter2" not in message


def test_public_url_is_kept_without_its_trailing_slash() -> None:
    http = http_settings(public_url="https://img.example.com/base/").server.http
    assert http.public_url == "https://img.example.com/base"


def test_loopback_bind_allows_loopback_names_only() -> None:
    security = transport_security(http_settings().server.http)
    assert security.enable_dns_rebinding_protection
    assert set(security.allowed_hosts) == {"127.0.0.1:*", "localhost:*", "[::1]:*"}
    assert "http://localhost:*" in security.allowed_origins


def test_public_bind_allows_the_public_url_host_plus_configured_names() -> None:
    security = transport_security(
        http_settings(
            host="0.0.0.0",
            public_url="https://img.example.com",
            allowed_hosts=["mcp.internal:*"],
            allowed_origins="https://app.example.com",
        ).server.http
    )
    assert set(security.allowed_hosts) == {
        "img.example.com",
        "img.example.com:*",
        "mcp.internal:*",
    }
    assert set(security.allowed_origins) == {
        "https://img.example.com",
        "https://app.example.com",
    }


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_auth(host: str) -> None:
    assert (
        exposure_problem(http_settings(host=host), allow_unauthenticated=False) is None
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "myhost.lan"])
def test_other_hosts_need_auth_or_the_flag(host: str) -> None:
    settings = http_settings(host=host)
    assert not auth_enabled(settings)
    problem = exposure_problem(settings, allow_unauthenticated=False)
    assert problem is not None
    assert host in problem
    assert "--allow-unauthenticated" in problem
    assert "[server.auth]" in problem
    assert exposure_problem(settings, allow_unauthenticated=True) is None


def test_serve_refuses_a_public_host_without_auth_before_binding(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    line = refused_before_binding(subprocess_env, tmp_path, "--host", "0.0.0.0")

    assert "0.0.0.0" in line
    assert "--allow-unauthenticated" in line


def test_bad_transport_is_a_usage_error(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    result = subprocess.run(
        [str(MCP_IMAGEGEN_BIN), "serve", "--transport", "websocket"],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--transport" in result.stderr
    assert "stdio" in result.stderr and "http" in result.stderr


async def test_while_draining_readyz_is_503_and_new_mcp_requests_are_refused(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    lifecycle = Lifecycle()
    app = build_app(create_server(settings), settings.server.http, lifecycle)
    lifecycle.begin_drain()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1:8000"
    ) as client:
        ready = await client.get("/readyz")
        health = await client.get("/healthz")
        call = await client.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 7, "method": "tools/call"},
            headers={"Accept": "application/json, text/event-stream"},
        )

    assert ready.status_code == 503
    assert ready.json() == {"status": "draining", "not_ready": ["draining"]}
    assert health.status_code == 200
    assert call.status_code == 503
    assert call.json() == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": -32000, "message": "server is shutting down"},
    }


def test_a_component_that_cannot_start_is_reported_in_one_line(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the image directory should be")
    config = tmp_path / "bad.toml"
    config.write_text(
        f'[storage.file]\ndirectory = "{blocker / "images"}"\n', encoding="utf-8"
    )
    result = subprocess.run(
        [
            str(MCP_IMAGEGEN_BIN),
            "serve",
            "--config",
            str(config),
            "--transport",
            "http",
        ],
        env={**subprocess_env, "MCP_IMAGEGEN_SERVER__HTTP__PORT": str(free_port())},
        cwd=tmp_path / "work",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mcp-imagegen: ")
    assert "storage.file.directory" in last
    assert "Traceback" not in result.stderr


# -- the event loop (server.http.loop) -------------------------------------------


def _serving_event(log_text: str) -> dict[str, object]:
    for line in log_text.splitlines():
        if line.startswith("{") and '"http_serving"' in line:
            event: dict[str, object] = json.loads(line)
            return event
    raise AssertionError(f"no http_serving line:\n{log_text}")


@pytest.mark.parametrize(
    ("choice", "loop"), [(None, "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")]
)
async def test_the_server_runs_on_the_configured_event_loop(
    start_server: StartServer, choice: str | None, loop: str
) -> None:
    # uvloop is a dependency (except on Windows): "auto", the default, takes it.
    http = {} if choice is None else {"loop": choice}
    server = start_server(config={"server.http": http}, args=["--log-level", "info"])
    async with server.session() as session:
        result = await session.call_tool(
            "generate_image", {"prompt": "a lighthouse", "width": 64, "height": 64}
        )

    assert result.is_error is not True
    assert _serving_event(server.log_text())["loop"] == loop


def test_uvloop_asked_for_but_not_installed_is_a_clear_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on Windows, where uvloop does not exist.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "uvloop" else real_find_spec(name, *a),
    )

    with pytest.raises(ConfigurationError, match="uvloop is not installed"):
        loop_options("uvloop")
    assert loop_options("auto") == {}
    assert loop_options("asyncio") == {}


def test_an_unknown_loop_is_refused_in_one_line(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    line = refused_before_binding(
        subprocess_env, tmp_path, env={"MCP_IMAGEGEN_SERVER__HTTP__LOOP": "trio"}
    )

    assert "server.http.loop" in line
    assert "MCP_IMAGEGEN_SERVER__HTTP__LOOP" in line
