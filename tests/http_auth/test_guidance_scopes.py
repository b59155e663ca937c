"""Prompts, completions and the newer resources need ``images:read`` like the rest.

Over real streamable HTTP with static bearer tokens: a token without the read
scope is refused each of them with ``insufficient_scope``; one with it is served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from mcp import ClientSession
from mcp.shared.exceptions import MCPError
from mcp.types import ResourceTemplateReference

from tests.http_auth.conftest import Running, mcp_session

pytestmark = pytest.mark.anyio

TOKEN = "guidance-token-0123456789"
IMAGE = ResourceTemplateReference(uri="image://{image_id}")

#: Each request the read scope guards, by a name for the failure message.
READS: dict[str, Callable[[ClientSession], Awaitable[Any]]] = {
    "prompts/list": lambda s: s.list_prompts(),
    "prompts/get": lambda s: s.get_prompt("prompt-guide"),
    "completion/complete": lambda s: s.complete(
        IMAGE, {"name": "image_id", "value": ""}
    ),
    "style://list": lambda s: s.read_resource("style://list"),
    "backend://list": lambda s: s.read_resource("backend://list"),
    "ui://": lambda s: s.read_resource("ui://mcp-imagegen/gallery"),
}


async def test_without_the_read_scope_each_is_refused(
    serve: Callable[[dict[str, Any]], Running],
) -> None:
    running = serve(
        {"mode": "bearer", "tokens": TOKEN, "bearer_scopes": ["images:generate"]}
    )
    async with mcp_session(running.url, TOKEN) as session:
        for what, call in READS.items():
            with pytest.raises(MCPError) as raised:
                await call(session)
            message = raised.value.error.message
            assert message.startswith("insufficient_scope"), what
            assert "'images:read'" in message, what
        # The session keeps serving what the token may do.
        assert (await session.list_tools()).tools


async def test_with_the_read_scope_each_is_served(
    serve: Callable[[dict[str, Any]], Running],
) -> None:
    running = serve(
        {"mode": "bearer", "tokens": TOKEN, "bearer_scopes": ["images:read"]}
    )
    async with mcp_session(running.url, TOKEN) as session:
        for what, call in READS.items():
            try:
                await call(session)
            except MCPError as exc:  # pragma: no cover - the failure report
                pytest.fail(f"{what}: {exc.error.message}")
