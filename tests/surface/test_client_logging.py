"""Logging to the client: ``notifications/message`` for those who asked."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import mcp
import pytest
from mcp.types import LoggingMessageNotificationParams

from mcp_imagegen._mcp import ImageGenServer
from tests.surface.conftest import SECRET

# The legacy logging/setLevel is exercised on purpose (the SDK warns).
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.usefixtures("debug_logging"),
    pytest.mark.filterwarnings("ignore:The logging capability is deprecated"),
]

Received = list[LoggingMessageNotificationParams]


def collector() -> tuple[Received, Callable[..., Any]]:
    received: Received = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    return received, on_log


def events(received: Received) -> list[str]:
    return [m.data["event"] for m in received]


async def test_set_level_then_generate_sends_events_at_and_above_it_only(
    make_server: Callable[..., ImageGenServer],
) -> None:
    received, on_log = collector()
    async with mcp.Client(
        make_server(), mode="legacy", logging_callback=on_log
    ) as client:
        assert client.server_capabilities.logging is not None
        await client.set_logging_level("info")
        result = await client.call_tool(
            "generate_image", {"prompt": "a lighthouse", "width": 64, "height": 64}
        )
        assert not result.is_error

    # backend_finished is a debug event: the server logs it, the client is
    # not sent it; image_generated is info.
    assert "image_generated" in events(received)
    assert "backend_finished" not in events(received)
    assert {m.level for m in received} <= {"info", "warning", "error", "critical"}
    assert all(m.logger == "mcp_imagegen" for m in received)
    [generated] = [m for m in received if m.data["event"] == "image_generated"]
    assert generated.data["width"] == 64


async def test_debug_level_gets_debug_events_too(
    make_server: Callable[..., ImageGenServer],
) -> None:
    received, on_log = collector()
    async with mcp.Client(
        make_server(), mode="legacy", logging_callback=on_log
    ) as client:
        await client.set_logging_level("debug")
        await client.call_tool("generate_image", {"prompt": "a lighthouse"})

    assert {"backend_finished", "image_generated"} <= set(events(received))


async def test_no_notifications_without_set_level(
    make_server: Callable[..., ImageGenServer],
) -> None:
    received, on_log = collector()
    async with mcp.Client(
        make_server(), mode="legacy", logging_callback=on_log
    ) as client:
        await client.call_tool("generate_image", {"prompt": "a lighthouse"})
        await client.call_tool("list_images", {})

    assert received == []


async def test_secrets_never_reach_the_client(
    make_server: Callable[..., ImageGenServer],
) -> None:
    received, on_log = collector()
    # Prompts are logged on request; one carrying URL credentials is redacted
    # by the same processor as stderr.
    server = make_server({"logging": {"log_prompts": True}})
    async with mcp.Client(server, mode="legacy", logging_callback=on_log) as client:
        await client.set_logging_level("debug")
        failed = await client.call_tool(
            "generate_image", {"prompt": "a lighthouse", "backend": "leaky"}
        )
        assert failed.is_error  # nothing listens on 127.0.0.1:9
        await client.call_tool(
            "generate_image",
            {"prompt": f"fetch http://alice:{SECRET}@example.com/x please"},
        )
        await client.call_tool("list_backends", {})

    assert "tool_failed" in events(received), events(received)
    [generated] = [m for m in received if m.data["event"] == "image_generated"]
    assert "example.com/x" in generated.data["prompt"]
    text = repr([m.data for m in received])
    assert SECRET not in text
    assert "alice" not in text


async def test_2026_requests_opt_in_per_request_through_meta(
    make_server: Callable[..., ImageGenServer],
) -> None:
    received, on_log = collector()
    async with mcp.Client(
        make_server(), mode="2026-07-28", logging_callback=on_log, log_level="info"
    ) as client:
        assert client.protocol_version == "2026-07-28"
        await client.call_tool("generate_image", {"prompt": "a lighthouse"})
    assert "image_generated" in events(received)
    assert "backend_finished" not in events(received)

    silent, on_silent = collector()
    async with mcp.Client(
        make_server(), mode="2026-07-28", logging_callback=on_silent
    ) as client:
        await client.call_tool("generate_image", {"prompt": "a lighthouse"})
    assert silent == []


async def test_events_from_a_worker_thread_arrive_too(
    make_server: Callable[..., ImageGenServer],
) -> None:
    # Post-processing and encoding run in threads; their events must not be
    # lost nor sent from the wrong thread.
    received, on_log = collector()
    with anyio.fail_after(60):
        async with mcp.Client(
            make_server(), mode="legacy", logging_callback=on_log
        ) as client:
            await client.set_logging_level("debug")
            for _ in range(3):
                await client.call_tool("generate_image", {"prompt": "a lighthouse"})
    assert events(received).count("image_generated") == 3


async def test_server_wide_events_go_to_connections_that_set_a_level(
    make_server: Callable[..., ImageGenServer],
) -> None:
    # Retention runs in the background, outside any request: its events go
    # to the connection that asked, on its standalone channel.
    received, on_log = collector()
    server = make_server({"storage": {"max_age": 1, "cleanup_interval": 1}})
    async with mcp.Client(server, mode="legacy", logging_callback=on_log) as client:
        await client.set_logging_level("info")
        await client.call_tool("generate_image", {"prompt": "short-lived"})
        for _ in range(300):  # retention runs every second; 30 s at most
            if "images_expired" in events(received):
                break
            await anyio.sleep(0.1)
    assert "images_expired" in events(received)
