"""Logging to the client over real transports: stdio, and HTTP with two sessions."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import LoggingMessageNotificationParams

from tests.conftest import MCP_IMAGEGEN_BIN
from tests.http.conftest import HttpServer, StartServer, start_server  # noqa: F401

# The legacy logging/setLevel is what these tests exercise: the SDK's client
# warns that 2026-07-28 deprecates it.
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:The logging capability is deprecated"),
]

Received = list[LoggingMessageNotificationParams]


class Collector:
    def __init__(self) -> None:
        self.received: Received = []

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.received.append(params)

    @property
    def events(self) -> list[str]:
        return [m.data["event"] for m in self.received]


async def test_stdio_set_level_then_generate_logs_to_the_client(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=str(MCP_IMAGEGEN_BIN),
        args=["serve"],
        env={
            **subprocess_env,
            "MCP_IMAGEGEN_LOGGING__FORMAT": "json",
            "MCP_IMAGEGEN_LOGGING__LEVEL": "debug",
        },
        cwd=str(tmp_path / "work"),
    )
    logs = Collector()
    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(60):
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, logging_callback=logs) as session,
        ):
            initialized = await session.initialize()
            assert initialized.capabilities.logging is not None
            await session.call_tool("generate_image", {"prompt": "silent"})
            assert logs.received == []
            await session.set_logging_level("info")
            await session.call_tool("generate_image", {"prompt": "a lighthouse"})

    assert "image_generated" in logs.events
    assert "backend_finished" not in logs.events  # debug: on stderr only
    assert "backend_finished" in (tmp_path / "server.log").read_text()


async def test_http_sessions_each_get_only_their_own_requests_events(
    start_server: StartServer,  # noqa: F811
) -> None:
    server = start_server(
        config={"server.http": {"stateless": False}, "logging": {"level": "debug"}}
    )
    first, second = Collector(), Collector()
    with anyio.fail_after(60):
        async with (
            httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300)) as http_one,
            httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300)) as http_two,
            streamable_http_client(server.url, http_client=http_one) as (r1, w1),
            streamable_http_client(server.url, http_client=http_two) as (r2, w2),
            ClientSession(r1, w1, logging_callback=first) as one,
            ClientSession(r2, w2, logging_callback=second) as two,
        ):
            await one.initialize()
            await two.initialize()
            await one.set_logging_level("debug")
            await two.set_logging_level("warning")
            made = await one.call_tool("generate_image", {"prompt": "only mine"})
            image_id = made.structured_content["images"][0]["id"]  # type: ignore[index]
            await two.call_tool("list_images", {})
            await two.set_logging_level("debug")
            await two.call_tool("list_images", {})
            await two.call_tool("delete_image", {"image_id": image_id})

    assert "image_generated" in first.events
    assert "backend_finished" in first.events
    assert any(m.data.get("image_id") == image_id for m in first.received)
    # The second session saw its own delete, nothing of the first's generation.
    assert second.events == ["image_deleted"]
    assert "image_deleted" not in first.events
