"""Clients that know nothing of tasks: generate_image never outlasts sync_wait."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_types import CallToolResult, TextContent

from mcp_imagegen import new_task_id
from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._mcp.server import ImageGenServer
from mcp_imagegen._plugins import PluginManager
from tests.conftest import MCP_IMAGEGEN_BIN
from tests.tasks.conftest import SLOW, SMALL
from tests.tasks.test_protocol import _images

pytestmark = pytest.mark.anyio

#: generate_image answers after 1 s; SLOW's placeholder takes 3 s for 30 steps.
ONE_SECOND = {**SLOW, "server": {"tasks": {"sync_wait": 1}}}


def _text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def _collect(
    call: Callable[[str, dict[str, Any]], Any], generation_id: str
) -> CallToolResult:
    """Call get_generation until the images are there (bounded: 400 × 50 ms)."""
    for _ in range(400):
        result: CallToolResult = await call(
            "get_generation", {"generation_id": generation_id}
        )
        assert result.structured_content is not None, _text(result)
        if result.structured_content.get("status") != "working":
            return result
        await anyio.sleep(0.05)
    raise AssertionError("the generation never finished")


async def test_a_slow_generation_answers_after_sync_wait_then_get_generation_has_it(
    make_server: Callable[..., ImageGenServer],
) -> None:
    arguments = {**SMALL, "steps": 30}
    async with mcp.Client(make_server(ONE_SECOND)) as client:
        first = await client.call_tool("generate_image", arguments)
        assert first.structured_content is not None
        generation_id = first.structured_content["generation_id"]
        still = await client.call_tool(
            "get_generation", {"generation_id": generation_id}
        )
        done = await _collect(client.call_tool, generation_id)
    async with mcp.Client(make_server(SLOW)) as client:
        synchronous = await client.call_tool("generate_image", arguments)

    assert first.is_error is not True
    assert first.structured_content == {
        "images": [],
        "generation_id": generation_id,
        "status": "working",
    }
    assert generation_id in _text(first)
    assert "get_generation" in _text(first)
    assert still.structured_content is not None
    assert still.structured_content["status"] == "working"
    assert done.is_error is not True
    assert _images(done) == _images(synchronous)
    assert [type(c) for c in done.content] == [type(c) for c in synchronous.content]


async def test_wait_false_answers_at_once_and_a_fast_call_still_waits(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server()) as client:
        at_once = await client.call_tool("generate_image", {**SMALL, "wait": False})
        assert at_once.structured_content is not None
        done = await _collect(
            client.call_tool, at_once.structured_content["generation_id"]
        )
        waited = await client.call_tool("generate_image", SMALL)

    assert at_once.structured_content["status"] == "working"
    assert at_once.structured_content["images"] == []
    assert len(_images(done)) == 1
    assert waited.structured_content is not None
    assert "generation_id" not in waited.structured_content
    assert _images(waited) == _images(done)


async def test_a_call_detached_while_queued_says_where_it_waits(
    make_server: Callable[..., ImageGenServer],
) -> None:
    # One task at a time: the second call waits in the task queue, and is
    # answered (wait=false) while it still waits there.
    one_at_a_time = {**SLOW, "server": {"tasks": {"max_running": 1}}}
    async with mcp.Client(make_server(one_at_a_time)) as client:
        running = await client.call_tool(
            "generate_image", {**SMALL, "steps": 30, "wait": False}
        )
        queued = await client.call_tool("generate_image", {**SMALL, "wait": False})
        assert queued.structured_content is not None
        again = await client.call_tool(
            "get_generation",
            {"generation_id": queued.structured_content["generation_id"]},
        )

    assert running.is_error is not True
    assert "(status: queued: next)" in _text(queued)
    assert "(status: queued: next)" in _text(again)


@pytest.mark.parametrize(
    "generation_id", [new_task_id(), "../../x", ""], ids=["unknown", "path", "empty"]
)
async def test_get_generation_of_a_bad_id_is_a_clear_tool_error(
    make_server: Callable[..., ImageGenServer], generation_id: str
) -> None:
    async with mcp.Client(make_server()) as client:
        result = await client.call_tool(
            "get_generation", {"generation_id": generation_id}
        )

    assert result.is_error is True
    text = _text(result).lower()
    assert "generation_id" in text or "task id" in text


async def test_a_failed_background_generation_reports_the_synchronous_error(
    make_server: Callable[..., ImageGenServer],
) -> None:
    bad = {**SMALL, "postprocess": ["no-such-step"]}
    async with mcp.Client(make_server()) as client:
        synchronous = await client.call_tool("generate_image", bad)
        at_once = await client.call_tool("generate_image", {**bad, "wait": False})
        assert at_once.structured_content is not None
        generation_id = at_once.structured_content["generation_id"]
        for _ in range(400):
            later = await client.call_tool(
                "get_generation", {"generation_id": generation_id}
            )
            if later.is_error:
                break
            await anyio.sleep(0.05)

    assert synchronous.is_error is True
    assert later.is_error is True
    reason = _text(synchronous).split(": ", 1)[1]
    assert reason in _text(later)
    assert "no-such-step" in reason


async def test_over_stdio_the_continuation_and_get_generation_work(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=str(MCP_IMAGEGEN_BIN),
        args=["serve"],
        env={
            **subprocess_env,
            "MCP_IMAGEGEN_BACKENDS__PLACEHOLDER__DELAY_MS": "100",
            "MCP_IMAGEGEN_SERVER__TASKS__SYNC_WAIT": "PT1S",
        },
        cwd=str(tmp_path / "work"),
    )
    progress: list[str | None] = []

    async def on_progress(
        done: float, total: float | None, message: str | None
    ) -> None:
        progress.append(message)

    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(60):
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            first = await session.call_tool(
                "generate_image",
                {**SMALL, "steps": 30},
                progress_callback=on_progress,
            )
            assert isinstance(first, CallToolResult)
            assert first.structured_content is not None
            done = await _collect(
                session.call_tool, first.structured_content["generation_id"]
            )

    assert first.is_error is not True
    assert progress, "progress flows while the call waits"
    assert len(_images(done)) == 1
    assert _images(done)[0]["steps"] == 30


async def test_only_a_generation_that_goes_on_writes_a_shared_task_record(
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
    image_dir: Path,
) -> None:
    # Served as over HTTP: records go to the file storage's tasks/ folder,
    # where every replica reads them. A call answered within sync_wait has no
    # one to share its record with, so it writes none (no fsync per call).
    server = create_server(make_settings(ONE_SECOND), plugin_manager, http=True)
    records = image_dir / "tasks"
    async with mcp.Client(server) as client:
        fast = await client.call_tool("generate_image", SMALL)
        assert not fast.is_error, _text(fast)
        assert "generation_id" not in (fast.structured_content or {})
        assert not records.exists() or not list(records.glob("*.json"))

        first = await client.call_tool("generate_image", {**SMALL, "wait": False})
        assert first.structured_content is not None
        generation_id = first.structured_content["generation_id"]
        assert (records / f"{generation_id}.json").exists()
        done = await _collect(client.call_tool, generation_id)
    assert done.structured_content is not None
    assert done.structured_content.get("images"), _text(done)
    assert [p.stem for p in records.glob("*.json")] == [generation_id]
