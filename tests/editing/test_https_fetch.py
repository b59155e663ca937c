"""URL inputs over real TLS: a loopback HTTPS server with a certificate of a test CA.

The fetcher connects to the address it checked, not to the name, so TLS must
still be about the name: the server sees the host name as SNI and in ``Host``,
and the certificate is checked against the name. ``inputs.ca_bundle`` adds a
private CA to the public ones; without it, or with a certificate for another
name, the fetch is refused with a clear error and nothing is stored.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import textwrap
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest
import trustme
from mcp.types import BlobResourceContents, CallToolResult, TextContent

from mcp_imagegen._config import settings_from_dict
from mcp_imagegen.errors import ConfigurationError
from tests.editing.conftest import picture, stored_count

pytestmark = pytest.mark.anyio

HOST = "localhost"
IMAGE = picture((96, 64), seed=21)


@dataclass
class TlsServer:
    """A running HTTPS server: its port and what each handshake and request said."""

    port: int
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)

    def url(self, path: str = "/picture.png") -> str:
        return f"https://{HOST}:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.state.hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(IMAGE)))
        self.end_headers()
        self.wfile.write(IMAGE)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: TlsServer


def _address_of_host() -> tuple[socket.AddressFamily, str]:
    """The address the fetcher connects to for HOST: the first one it resolves."""
    family, _, _, _, sockaddr = socket.getaddrinfo(HOST, 0, type=socket.SOCK_STREAM)[0]
    return family, str(sockaddr[0])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def https_server(ca: trustme.CA) -> Iterator[Callable[[str], TlsServer]]:
    """Start an HTTPS server on loopback with a certificate for a given name."""
    running: list[tuple[_Server, threading.Thread]] = []

    def start(name: str) -> TlsServer:
        family, address = _address_of_host()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(name).configure_cert(context)
        _Server.address_family = family
        server = _Server((address, 0), _Handler)
        state = TlsServer(port=server.server_address[1])

        def record_sni(_: Any, server_name: str | None, __: Any) -> None:
            state.server_names.append(server_name)

        context.sni_callback = record_sni
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.state = state
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        running.append((server, thread))
        return state

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def inputs(**extra: Any) -> dict[str, Any]:
    # localhost is loopback: allowed here on purpose, as an internal host is.
    return {
        "inputs": {
            "allowed_hosts": [HOST],
            "allow_private_addresses": True,
            "fetch_timeout": 10,
            **extra,
        }
    }


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    [content] = result.content
    assert isinstance(content, TextContent)
    return content.text


async def test_a_private_ca_in_ca_bundle_fetches_over_tls_with_the_name_as_sni(
    connect: Callable[..., mcp.Client],
    https_server: Callable[[str], TlsServer],
    ca_file: Path,
) -> None:
    server = https_server(HOST)
    async with connect(inputs(ca_bundle=str(ca_file))) as client:
        result = await client.call_tool("ingest_image", {"url": server.url()})
        assert not result.is_error, result.content
        assert result.structured_content is not None
        [info] = result.structured_content["images"]
        [content] = (await client.read_resource(info["uri"])).contents
    assert isinstance(content, BlobResourceContents)
    assert base64.b64decode(content.blob) == IMAGE
    assert info["origin"] == f"https://{HOST}:{server.port}/picture.png"
    # Connected to the checked address, yet TLS and HTTP were about the name.
    assert server.server_names == [HOST]
    assert server.hosts == [f"{HOST}:{server.port}"]


async def test_a_certificate_for_another_name_is_refused(
    connect: Callable[..., mcp.Client],
    https_server: Callable[[str], TlsServer],
    ca_file: Path,
    image_dir: Path,
) -> None:
    server = https_server("images.other.test")
    async with connect(inputs(ca_bundle=str(ca_file))) as client:
        result = await client.call_tool("ingest_image", {"url": server.url()})
        edit = await client.call_tool(
            "edit_image", {"image": server.url(), "prompt": "night"}
        )
    for text in (error_text(result), error_text(edit)):
        assert f"fetching https://{HOST}:{server.port}/picture.png failed" in text
        assert "ConnectError" in text
    assert server.hosts == []  # no request was sent over the refused connection
    assert await anyio.to_thread.run_sync(stored_count, image_dir) == 0


async def test_without_the_ca_bundle_the_private_ca_is_not_trusted(
    connect: Callable[..., mcp.Client],
    https_server: Callable[[str], TlsServer],
    image_dir: Path,
) -> None:
    server = https_server(HOST)
    async with connect(inputs()) as client:
        result = await client.call_tool("ingest_image", {"url": server.url()})
    assert "failed (ConnectError)" in error_text(result)
    assert server.hosts == []
    assert await anyio.to_thread.run_sync(stored_count, image_dir) == 0


@pytest.mark.parametrize("content", [None, b"not a certificate"])
async def test_a_ca_bundle_that_cannot_be_loaded_stops_the_start(
    connect: Callable[..., mcp.Client], tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=r"^inputs\.ca_bundle: cannot load"):
        async with connect(inputs(ca_bundle=str(path))):
            pass


def test_the_documented_private_ca_example_is_valid_configuration() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "editing.md").read_text()
    [block] = re.findall(r"```toml\n(.*?)```", docs, re.S)
    settings = settings_from_dict(tomllib.loads(textwrap.dedent(block)))
    assert settings.inputs.ca_bundle == Path("/etc/ssl/corp-ca.pem")
    assert settings.inputs.allowed_hosts == ["images.corp.example"]
    assert [str(n) for n in settings.inputs.allowed_networks] == ["10.1.2.0/24"]
