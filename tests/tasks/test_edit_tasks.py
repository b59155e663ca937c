"""edit_image as an MCP task and through the no-tasks fallback (sync_wait, wait)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import mcp
import pytest
from mcp_types import CallToolResult, ImageContent, TextContent

from mcp_imagegen._mcp.server import ImageGenServer
from tests.tasks.conftest import SLOW, SMALL, StatusWatcher, TaskClient, legacy_client
from tests.tasks.test_fallback import ONE_SECOND, _collect
from tests.tasks.test_protocol import _images

pytestmark = pytest.mark.anyio


def _text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def _source(client: mcp.Client) -> str:
    """A stored image to edit (made quickly: one step)."""
    made = await client.call_tool("generate_image", {**SMALL, "steps": 1})
    assert made.structured_content is not None, _text(made)
    image_id: str = made.structured_content["images"][0]["id"]
    return image_id


def _edit(image_id: str, **more: Any) -> dict[str, Any]:
    return {"image": image_id, "prompt": "a lighthouse at night", "seed": 3, **more}


async def test_edit_image_runs_as_a_task_and_ends_as_the_synchronous_call(
    make_server: Callable[..., ImageGenServer],
) -> None:
    watcher = StatusWatcher()
    async with legacy_client(make_server(SLOW), watcher) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        image_id = await _source(client)
        tasks = TaskClient(client)
        arguments = _edit(image_id, steps=8)
        created = await tasks.call_as_task("edit_image", arguments, ttl=60_000)
        from_task = await tasks.result(created.task.task_id)
        task = await tasks.get(created.task.task_id)
        synchronous = await client.call_tool("edit_image", arguments)

    execution = tools["edit_image"].execution
    assert execution is not None and execution.task_support == "optional"
    assert task.status == "completed"
    assert from_task.is_error is not True, _text(from_task)
    assert _images(from_task) == _images(synchronous)
    assert _images(from_task)[0]["source_image_id"] == image_id
    previews = [c.data for c in from_task.content if isinstance(c, ImageContent)]
    assert previews == [
        c.data for c in synchronous.content if isinstance(c, ImageContent)
    ]
    seen = [n.status_message or "" for n in watcher.seen]
    assert any("step" in m for m in seen), seen


async def test_a_slow_edit_continues_and_get_generation_returns_what_edit_image_does(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server(ONE_SECOND)) as client:
        image_id = await _source(client)
        # 30 steps of 100 ms: past the 1 s sync_wait.
        arguments = _edit(image_id, steps=30)
        first = await client.call_tool("edit_image", arguments)
        assert first.structured_content is not None, _text(first)
        generation_id = first.structured_content["generation_id"]
        done = await _collect(client.call_tool, generation_id)
        at_once = await client.call_tool(
            "edit_image", _edit(image_id, steps=1, wait=False)
        )
        assert at_once.structured_content is not None, _text(at_once)
        quick = await _collect(
            client.call_tool, at_once.structured_content["generation_id"]
        )
    async with mcp.Client(make_server(SLOW)) as client:
        image_id = await _source(client)
        synchronous = await client.call_tool("edit_image", _edit(image_id, steps=30))

    assert first.is_error is not True
    assert first.structured_content["status"] == "working"
    assert first.structured_content["images"] == []
    assert "get_generation" in _text(first)
    assert done.is_error is not True, _text(done)
    volatile = {"source_image_id"}  # the two servers stored different sources
    assert [
        {k: v for k, v in i.items() if k not in volatile} for i in _images(done)
    ] == [
        {k: v for k, v in i.items() if k not in volatile} for i in _images(synchronous)
    ]
    assert [type(c) for c in done.content] == [type(c) for c in synchronous.content]
    assert at_once.structured_content["status"] == "working"
    assert len(_images(quick)) == 1


async def test_a_failed_background_edit_reports_the_synchronous_error(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server()) as client:
        image_id = await _source(client)
        bad = _edit(image_id, postprocess=["no-such-step"])
        synchronous = await client.call_tool("edit_image", bad)
        at_once = await client.call_tool("edit_image", {**bad, "wait": False})
        assert at_once.structured_content is not None, _text(at_once)
        generation_id = at_once.structured_content["generation_id"]
        later = await client.call_tool(
            "get_generation", {"generation_id": generation_id}
        )
        for _ in range(400):
            if later.is_error:
                break
            await anyio.sleep(0.05)
            later = await client.call_tool(
                "get_generation", {"generation_id": generation_id}
            )

    assert synchronous.is_error is True
    assert later.is_error is True
    assert "no-such-step" in _text(synchronous)
    # The SDK words a tool error "Error executing tool <name>: <reason>".
    reason = _text(synchronous).split(": ", 1)[1]
    assert _text(later) == f"Error executing tool get_generation: {reason}"
