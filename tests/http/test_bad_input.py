"""Bad HTTP input gets a clear HTTP or JSON-RPC error and the server keeps serving."""

from __future__ import annotations

import anyio
import httpx
import pytest

from tests.http.conftest import INITIALIZE, MCP_HEADERS, HttpServer, StartServer

pytestmark = pytest.mark.anyio


async def still_serves(server: HttpServer) -> None:
    """A real client can still list tools after the bad request."""
    with anyio.fail_after(30):
        async with server.session() as session:
            tools = await session.list_tools()
    assert tools.tools


async def test_oversized_body_is_413_and_the_server_keeps_serving(
    start_server: StartServer,
) -> None:
    server = start_server(config={"server.http": {"max_body_bytes": 4096}})
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "pad": "' + b"x" * 8192
    async with httpx.AsyncClient() as client:
        response = await client.post(
            server.url, content=body + b'"}', headers=MCP_HEADERS
        )

    assert response.status_code == 413
    assert "too large" in response.text
    await still_serves(server)


async def test_malformed_json_rpc_is_a_parse_error_and_the_server_keeps_serving(
    start_server: StartServer,
) -> None:
    server = start_server()
    async with httpx.AsyncClient() as client:
        not_json = await client.post(
            server.url, content=b"{not json", headers=MCP_HEADERS
        )
        not_rpc = await client.post(
            server.url, json={"hello": "world"}, headers=MCP_HEADERS
        )

    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == -32700  # parse error
    assert not_rpc.status_code == 400
    assert not_rpc.json()["error"]["code"] in (-32600, -32602)  # invalid request
    await still_serves(server)


async def test_unknown_session_id_in_stateful_mode_is_404_and_serving_goes_on(
    start_server: StartServer,
) -> None:
    server = start_server(config={"server.http": {"stateless": False}})
    async with httpx.AsyncClient() as client:
        response = await client.post(
            server.url,
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            headers={**MCP_HEADERS, "Mcp-Session-Id": "no-such-session"},
        )

    assert response.status_code == 404
    assert "session" in response.text.lower()
    await still_serves(server)


async def test_host_header_not_allowed_is_refused_and_the_server_keeps_serving(
    start_server: StartServer,
) -> None:
    server = start_server(
        config={"server.http": {"allowed_hosts": ["images.example.com"]}}
    )
    async with httpx.AsyncClient() as client:
        evil = await client.post(
            server.url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Host": "evil.example.net"},
        )
        evil_origin = await client.post(
            server.url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Origin": "http://evil.example.net"},
        )
        configured = await client.post(
            server.url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Host": "images.example.com"},
        )

    assert evil.status_code == 421
    assert "Host" in evil.text
    assert evil_origin.status_code == 403
    assert configured.status_code == 200, configured.text
    await still_serves(server)
