"""A cancelled MCP call cancels its KServe HTTP request and frees its slot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_imagegen._app import create_server
from mcp_imagegen._config import settings_from_dict
from tests.kserve.support import FAST_RETRIES, KServeServer

pytestmark = [pytest.mark.anyio, pytest.mark.kserve]


async def test_cancelled_generate_image_stops_waiting_on_the_predictor(
    kserve_server: KServeServer, tmp_path: Path
) -> None:
    common = {"type": "kserve", "url": kserve_server.url, **FAST_RETRIES}
    settings = settings_from_dict(
        {
            # One slot and one waiter: the second call can only run once the
            # cancelled one has really given its slot back.
            "server": {"max_concurrent_generations": 1, "max_queued_generations": 1},
            "generation": {"backend": "slow", "postprocess": []},
            "backends": {
                "slow": {
                    **common,
                    "model": "fault-slow",
                    "heartbeat_interval": 0.05,
                    "extra_parameters": {"delay": 60},
                },
                "sd": {**common, "model": "sd-v1"},
            },
            "storage": {"file": {"directory": str(tmp_path)}},
        }
    )
    waiting = anyio.Event()

    async def on_progress(
        done: float, total: float | None, message: str | None
    ) -> None:
        if message and message.startswith("waiting for model"):
            waiting.set()

    async def slow_call(client: Client) -> None:
        await client.call_tool(
            "generate_image",
            {"prompt": "a slow lighthouse", "width": 64, "height": 64},
            progress_callback=on_progress,
        )

    # Safety net: without cancellation the slow request would hold the slot 60 s.
    with anyio.fail_after(20):
        async with Client(create_server(settings)) as client:
            async with anyio.create_task_group() as group:
                group.start_soon(slow_call, client)
                await waiting.wait()
                group.cancel_scope.cancel()
            result: Any = await client.call_tool(
                "generate_image",
                {
                    "prompt": "a quick lighthouse",
                    "width": 64,
                    "height": 64,
                    "backend": "sd",
                },
            )

    assert waiting.is_set()
    assert not result.is_error, result.content
    [image] = result.structured_content["images"]
    stored = [path.name async for path in anyio.Path(tmp_path).rglob("*.*")]
    assert sorted(stored) == sorted([f"{image['id']}.json", f"{image['id']}.png"])
