"""Tasks in front of a real, slow KServe predictor (``tests/kserve``'s fault-slow).

The predictor answers after ``delay`` seconds per image; the KServe backend
reports its progress while it waits. A task's status message follows that
progress, cancelling the task aborts the predictor request (the predictor
counts the hang-up) and frees the slot, and a failed task carries the error a
synchronous call returns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp_types import CallToolResult, TextContent

from mcp_imagegen._app import create_server
from mcp_imagegen._config import settings_from_dict
from mcp_imagegen._mcp.server import ImageGenServer
from tests.kserve.conftest import kserve_server  # noqa: F401  (a fixture used here)
from tests.kserve.predictor import DISCONNECTS_PATH
from tests.kserve.support import FAST_RETRIES, KServeServer
from tests.tasks.conftest import TaskClient, legacy_client
from tests.tasks.test_protocol import _images

pytestmark = [pytest.mark.anyio, pytest.mark.kserve]

#: Polls before a test gives up (50 ms apart, so at most a minute).
POLLS = 1200
ARGUMENTS = {"prompt": "a slow lighthouse", "width": 64, "height": 64, "seed": 5}


@pytest.fixture
def kserve_tasks_server(
    kserve_server: KServeServer,  # noqa: F811  (the imported fixture)
    tmp_path: Path,
) -> Callable[..., ImageGenServer]:
    """``make(delay=s, **server)``: a server whose default backend is fault-slow."""

    def make(delay: float, **server: Any) -> ImageGenServer:
        common = {"type": "kserve", "url": kserve_server.url, **FAST_RETRIES}
        settings = settings_from_dict(
            {
                "server": server,
                "generation": {"backend": "slow", "postprocess": []},
                "backends": {
                    "slow": {
                        **common,
                        "model": "fault-slow",
                        "heartbeat_interval": 0.1,
                        # One request at a time: image 2 waits for image 1.
                        "max_concurrency": 1,
                        "extra_parameters": {"delay": delay},
                    },
                    "sd": {**common, "model": "sd-v1"},
                    "broken": {**common, "model": "fault-500"},
                },
                "storage": {"file": {"directory": str(tmp_path / "images")}},
            }
        )
        return create_server(settings)

    return make


def _disconnects(server: KServeServer) -> int:
    counts = httpx.get(server.url + DISCONNECTS_PATH, timeout=5).json()
    return int(counts.get("fault-slow", 0))


def _text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_a_task_follows_the_predictors_progress_and_ends_as_a_synchronous_call(
    kserve_tasks_server: Callable[..., ImageGenServer],
) -> None:
    arguments = {**ARGUMENTS, "num_images": 2}
    messages: list[str] = []
    with anyio.fail_after(120):
        async with legacy_client(kserve_tasks_server(delay=1.0)) as client:
            tasks = TaskClient(client)
            created = await tasks.call_as_task("generate_image", arguments)
            task_id = created.task.task_id
            task = await tasks.until_done(task_id, messages)
            from_task = await tasks.result(task_id)
            synchronous = await client.call_tool("generate_image", arguments)

    assert task.status == "completed", messages
    assert any(m.startswith("waiting for model 'fault-slow'") for m in messages)
    assert any("received image 1/2" in m for m in messages), messages
    assert from_task.is_error is not True, _text(from_task)
    assert len(_images(from_task)) == 2
    assert _images(from_task) == _images(synchronous)


async def test_cancelling_a_task_aborts_the_predictor_request_and_frees_the_slot(
    kserve_tasks_server: Callable[..., ImageGenServer],
    kserve_server: KServeServer,  # noqa: F811  (the imported fixture)
    tmp_path: Path,
) -> None:
    # One slot and no queue: the quick call after the cancel is refused as
    # busy unless the cancelled request really gave its slot back.
    server = kserve_tasks_server(
        delay=60, max_concurrent_generations=1, max_queued_generations=0
    )
    before = _disconnects(kserve_server)
    with anyio.fail_after(60):
        async with legacy_client(server) as client:
            tasks = TaskClient(client)
            created = await tasks.call_as_task("generate_image", ARGUMENTS)
            task_id = created.task.task_id
            task = await tasks.until(
                task_id,
                lambda t: (t.status_message or "").startswith("waiting for model"),
            )
            cancelled = await tasks.cancel(task_id)
            for _ in range(POLLS):
                after = _disconnects(kserve_server)
                if after > before:
                    break
                await anyio.sleep(0.05)
            quick: Any = await client.call_tool(
                "generate_image", {**ARGUMENTS, "backend": "sd"}
            )

    assert (task.status_message or "").startswith("waiting for model"), task
    assert cancelled.status == "cancelled"
    assert after == before + 1
    assert not quick.is_error, _text(quick)
    [image] = quick.structured_content["images"]
    stored = sorted(p.name for p in (tmp_path / "images").rglob("*.png"))
    assert stored == [f"{image['id']}.png"]


async def test_a_failed_task_carries_the_error_of_the_synchronous_call(
    kserve_tasks_server: Callable[..., ImageGenServer],
) -> None:
    arguments = {**ARGUMENTS, "backend": "broken"}
    with anyio.fail_after(60):
        async with legacy_client(kserve_tasks_server(delay=1.0)) as client:
            tasks = TaskClient(client)
            created = await tasks.call_as_task("generate_image", arguments)
            from_task = await tasks.result(created.task.task_id)
            task = await tasks.get(created.task.task_id)
            synchronous = await client.call_tool("generate_image", arguments)

    assert synchronous.is_error is True
    assert from_task.is_error is True
    assert task.status == "failed"
    assert _text(from_task) == _text(synchronous)
    assert task.status_message == _text(synchronous)
    assert "fault-500" in _text(synchronous) or "broken" in _text(synchronous)
