"""`serve --transport http` with [server.auth]: the composition root wires the
token verifier, the protected-resource metadata and the per-tool scopes."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.http.conftest import StartServer

pytestmark = pytest.mark.anyio

TOKEN = "served-token-7f3a9c"
READ_ONLY = "served-read-only-2b8e41"


async def test_served_http_needs_a_token_and_enforces_scopes(
    start_server: StartServer,
) -> None:
    server = start_server(
        config={"server.auth": {"mode": "bearer"}},
        env={"MCP_IMAGEGEN_SERVER__AUTH__TOKENS": TOKEN},
    )

    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient() as client:
        anonymous = await client.post(server.url, json=ping)
        metadata = await client.get(
            server.base + "/.well-known/oauth-protected-resource/mcp"
        )
    with anyio.fail_after(60):
        async with server.session(Authorization=f"Bearer {TOKEN}") as session:
            tools = await session.list_tools()
            result = await session.call_tool(
                "generate_image", {"prompt": "a kite", "width": 64, "height": 64}
            )

    assert anonymous.status_code == 401
    assert "resource_metadata=" in anonymous.headers["www-authenticate"]
    assert metadata.status_code == 200
    assert "images:delete" in metadata.json()["scopes_supported"]
    assert "generate_image" in {tool.name for tool in tools.tools}
    assert not result.is_error
    assert TOKEN not in server.log_text()


async def test_served_http_refuses_a_tool_outside_the_token_scopes_and_logs_it(
    start_server: StartServer,
) -> None:
    server = start_server(
        config={"server.auth": {"mode": "bearer", "bearer_scopes": ["images:read"]}},
        env={"MCP_IMAGEGEN_SERVER__AUTH__TOKENS": READ_ONLY},
    )

    with anyio.fail_after(60):
        async with server.session(Authorization=f"Bearer {READ_ONLY}") as session:
            listed = await session.call_tool("list_images", {})
            with pytest.raises(MCPError, match=r"insufficient_scope.*images:generate"):
                await session.call_tool("generate_image", {"prompt": "a kite"})
    async with httpx.AsyncClient() as client:  # no token: refused before MCP
        await client.post(
            server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
        )

    assert not listed.is_error
    # Each tool call, the refused one too, names the token by its fingerprint.
    lines = [
        json.loads(line)
        for line in server.log_text().splitlines()
        if '"tool_called"' in line
    ]
    assert [(line["tool"], line["outcome"]) for line in lines] == [
        ("list_images", "ok"),
        ("generate_image", "error"),
    ]
    [client_name] = {line["client"] for line in lines}
    assert client_name.startswith("bearer:sha256:")
    assert READ_ONLY not in server.log_text()
