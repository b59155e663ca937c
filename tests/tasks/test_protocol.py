"""MCP tasks (protocol revision 2025-11-25) through a real client session."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ImageContent, TextContent
from mcp_types.jsonrpc import INVALID_PARAMS

from mcp_imagegen import new_task_id
from mcp_imagegen._mcp.server import ImageGenServer
from mcp_imagegen.models import TaskRecord
from tests.tasks.conftest import SLOW, SMALL, StatusWatcher, TaskClient, legacy_client

pytestmark = pytest.mark.anyio

#: Fields of an image that differ between two generations of the same picture.
VOLATILE = {"id", "uri", "url", "path", "created_at"}


def _images(result: CallToolResult) -> list[dict[str, Any]]:
    assert result.structured_content is not None
    return [
        {k: v for k, v in image.items() if k not in VOLATILE}
        for image in result.structured_content["images"]
    ]


async def test_server_advertises_tasks_and_the_tools_that_accept_them(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with legacy_client(make_server()) as client:
        version = client.protocol_version
        capability = client.server_capabilities.tasks
        tools = {t.name: t for t in (await client.list_tools()).tools}

    assert version == "2025-11-25"
    assert capability is not None
    assert capability.list is not None and capability.cancel is not None
    assert capability.requests is not None and capability.requests.tools is not None
    assert capability.requests.tools.call is not None
    optional = {n for n, t in tools.items() if t.execution and t.execution.task_support}
    assert optional == {"generate_image", "transform_image", "edit_image"}
    assert tools["generate_image"].execution.task_support == "optional"  # type: ignore[union-attr]


async def test_a_task_starts_at_once_follows_progress_and_ends_as_a_synchronous_call(
    make_server: Callable[..., ImageGenServer],
) -> None:
    watcher = StatusWatcher()
    arguments = {**SMALL, "steps": 12}
    async with legacy_client(make_server(SLOW), watcher) as client:
        tasks = TaskClient(client)
        created = await tasks.call_as_task("generate_image", arguments, ttl=60_000)
        task_id = created.task.task_id
        assert created.task.status == "working"
        assert created.task.ttl == 60_000
        assert created.task.poll_interval == 1000
        messages: list[str] = []
        task = await tasks.until_done(task_id, messages)
        from_task = await tasks.result(task_id)
        synchronous = await client.call_tool("generate_image", arguments)

    assert task.status == "completed"
    assert any("step" in m for m in messages), messages
    assert from_task.is_error is not True
    assert from_task.meta == {
        "io.modelcontextprotocol/related-task": {"taskId": task_id}
    }
    assert _images(from_task) == _images(synchronous)
    assert [type(c) for c in from_task.content] == [
        type(c) for c in synchronous.content
    ]
    previews = [c.data for c in from_task.content if isinstance(c, ImageContent)]
    assert previews == [
        c.data for c in synchronous.content if isinstance(c, ImageContent)
    ]
    statuses = [n.status for n in watcher.seen if n.task_id == task_id]
    assert statuses[-1] == "completed"
    assert any(n.status_message and "step" in n.status_message for n in watcher.seen)


async def test_transform_image_runs_as_a_task_too(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with legacy_client(make_server()) as client:
        made = await client.call_tool("generate_image", SMALL)
        assert made.structured_content is not None
        image_id = made.structured_content["images"][0]["id"]
        tasks = TaskClient(client)
        created = await tasks.call_as_task(
            "transform_image",
            {"image_id": image_id, "postprocess": [], "output_format": "webp"},
        )
        result = await tasks.result(created.task.task_id)
        final = await tasks.get(created.task.task_id)

    assert final.status == "completed"
    assert created.task.ttl == 3_600_000  # no ttl asked: server.tasks.ttl
    assert result.structured_content is not None
    assert result.structured_content["images"][0]["source_image_id"] == image_id


async def test_cancelling_a_task_stops_its_generation_frees_the_slot_and_stores_nothing(
    make_server: Callable[..., ImageGenServer], image_dir: Path
) -> None:
    one_slot = {
        **SLOW,
        "server": {"max_concurrent_generations": 1, "max_queued_generations": 0},
    }
    async with legacy_client(make_server(one_slot)) as client:
        tasks = TaskClient(client)
        created = await tasks.call_as_task("generate_image", {**SMALL, "steps": 50})
        task_id = created.task.task_id
        await tasks.until(task_id, lambda t: "step" in (t.status_message or ""))
        cancelled = await tasks.cancel(task_id)
        after = await tasks.get(task_id)
        with pytest.raises(MCPError) as no_result:
            await tasks.result(task_id)
        with pytest.raises(MCPError) as again:
            await tasks.cancel(task_id)
        listed = await client.call_tool("list_images", {})
        # The only slot is free again: a new call is not refused as busy.
        fresh = await client.call_tool("generate_image", {**SMALL, "steps": 1})

    assert cancelled.status == after.status == "cancelled"
    assert no_result.value.code == INVALID_PARAMS
    assert "cancelled" in no_result.value.message
    assert again.value.code == INVALID_PARAMS
    assert "already cancelled" in again.value.message
    assert listed.structured_content == {"images": [], "next_cursor": None}
    assert fresh.is_error is not True
    assert len([p async for p in anyio.Path(image_dir).rglob("*.png")]) == 1


@pytest.mark.parametrize(
    ("task_id", "expected"),
    [
        pytest.param(new_task_id(), "no task", id="unknown"),
        pytest.param("../../etc/passwd", "task id", id="path"),
        pytest.param("", "task id", id="empty"),
        pytest.param("20261130T032542409-XYZ", "task id", id="malformed"),
    ],
)
@pytest.mark.parametrize("method", ["get", "result", "cancel"])
async def test_bad_task_ids_get_a_clear_invalid_params_error(
    make_server: Callable[..., ImageGenServer],
    task_id: str,
    expected: str,
    method: str,
) -> None:
    async with legacy_client(make_server()) as client:
        tasks = TaskClient(client)
        with pytest.raises(MCPError) as error:
            await getattr(tasks, method)(task_id)
        # The server goes on serving.
        assert (await client.list_tools()).tools

    assert error.value.code == INVALID_PARAMS
    assert expected in error.value.message.lower()


async def test_a_ttl_too_short_is_refused_and_a_long_one_clamped(
    make_server: Callable[..., ImageGenServer],
) -> None:
    server = make_server({"server": {"tasks": {"ttl": 600}}})
    async with legacy_client(server) as client:
        tasks = TaskClient(client)
        with pytest.raises(MCPError) as short:
            await tasks.call_as_task("generate_image", SMALL, ttl=10)
        created = await tasks.call_as_task("generate_image", SMALL, ttl=10**12)
        await tasks.result(created.task.task_id)

    assert short.value.code == INVALID_PARAMS
    assert "task.ttl" in short.value.message
    assert created.task.ttl == 600_000


async def test_a_tool_that_does_not_run_as_a_task_says_so(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with legacy_client(make_server()) as client:
        with pytest.raises(MCPError) as error:
            await TaskClient(client).call_as_task("list_backends", {}, ttl=60_000)

    assert error.value.code == INVALID_PARAMS
    assert "does not run as a task" in error.value.message
    assert "generate_image" in error.value.message


async def test_tasks_wait_their_turn_and_a_full_queue_is_refused(
    make_server: Callable[..., ImageGenServer],
) -> None:
    limits = {**SLOW, "server": {"tasks": {"max_running": 1, "max_queued": 1}}}
    async with legacy_client(make_server(limits)) as client:
        tasks = TaskClient(client)
        first = await tasks.call_as_task("generate_image", {**SMALL, "steps": 50})
        second = await tasks.call_as_task("generate_image", {**SMALL, "steps": 1})
        waiting = await tasks.until(
            second.task.task_id, lambda t: t.status_message == "queued: next"
        )
        with pytest.raises(MCPError) as full:
            await tasks.call_as_task("generate_image", SMALL)
        await tasks.cancel(first.task.task_id)
        done = await tasks.result(second.task.task_id)

    assert waiting.status == "working"
    assert "too many tasks" in full.value.message
    assert "server.tasks.max_queued" in full.value.message
    assert done.is_error is not True


async def test_tasks_list_shows_the_callers_tasks_newest_first(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with legacy_client(make_server()) as client:
        tasks = TaskClient(client)
        first = await tasks.call_as_task("generate_image", SMALL)
        second = await tasks.call_as_task("generate_image", SMALL)
        await tasks.result(first.task.task_id)
        await tasks.result(second.task.task_id)
        listed = await tasks.list()

    assert [t.task_id for t in listed.tasks] == [
        second.task.task_id,
        first.task.task_id,
    ]
    assert {t.status for t in listed.tasks} == {"completed"}


def _foreign_record(heartbeat_age: timedelta) -> TaskRecord:
    """A working task another server process runs (or ran)."""
    now = datetime.now(UTC)
    return TaskRecord(
        task_id=new_task_id(now),
        tool="generate_image",
        created_at=now - heartbeat_age,
        updated_at=now - heartbeat_age,
        ttl_ms=3_600_000,
        poll_interval_ms=1000,
        runner="other-host:4242:dead",
        heartbeat_at=now - heartbeat_age,
    )


async def test_a_task_whose_runner_died_is_reported_failed_with_the_reason(
    make_server: Callable[..., ImageGenServer],
) -> None:
    server = make_server()
    async with legacy_client(server) as client:
        assert server.tasks is not None
        dead = _foreign_record(timedelta(minutes=5))
        await server.tasks.store.put(dead)
        tasks = TaskClient(client)
        task = await tasks.get(dead.task_id)
        with pytest.raises(MCPError) as no_result:
            await tasks.result(dead.task_id)

    assert task.status == "failed"
    assert task.status_message is not None
    assert "other-host:4242:dead" in task.status_message
    assert "stopped" in task.status_message
    assert "stopped" in no_result.value.message


async def test_cancelling_another_processes_task_asks_its_runner_through_the_store(
    make_server: Callable[..., ImageGenServer],
) -> None:
    server = make_server()
    async with legacy_client(server) as client:
        assert server.tasks is not None
        alive = _foreign_record(timedelta(seconds=0))
        await server.tasks.store.put(alive)
        cancelled = await TaskClient(client).cancel(alive.task_id)
        asked = await server.tasks.store.cancel_requested(alive.task_id)

    assert cancelled.status == "cancelled"
    assert asked


async def test_a_cancel_asked_through_the_store_stops_the_running_task(
    make_server: Callable[..., ImageGenServer], image_dir: Path
) -> None:
    # Another replica asks by writing to the store; this runner sees it at
    # its next heartbeat.
    quick_heartbeat = {**SLOW, "server": {"tasks": {"heartbeat_interval": 0.2}}}
    server = make_server(quick_heartbeat)
    async with legacy_client(server) as client:
        assert server.tasks is not None
        tasks = TaskClient(client)
        created = await tasks.call_as_task("generate_image", {**SMALL, "steps": 50})
        task_id = created.task.task_id
        await tasks.until(task_id, lambda t: "step" in (t.status_message or ""))
        await server.tasks.store.request_cancel(task_id)
        final = await tasks.until(task_id, lambda t: t.status != "working")

    assert final.status == "cancelled"
    assert not [p async for p in anyio.Path(image_dir).rglob("*.png")]


async def test_expired_task_records_go_with_the_retention_sweep(
    make_server: Callable[..., ImageGenServer],
) -> None:
    server = make_server()
    async with legacy_client(server) as client:
        assert server.tasks is not None
        old = _foreign_record(timedelta(hours=2)).model_copy(
            update={"status": "completed", "result": {"content": []}}
        )
        await server.tasks.store.put(old)
        swept = await server.service.retention.delete_expired_tasks()
        with pytest.raises(MCPError) as gone:
            await TaskClient(client).get(old.task_id)

    assert swept == 1
    assert "no task" in gone.value.message


async def test_a_failed_generation_fails_its_task_with_the_synchronous_error(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with legacy_client(make_server()) as client:
        tasks = TaskClient(client)
        arguments = {**SMALL, "backend": "placeholder", "postprocess": ["no-such-step"]}
        created = await tasks.call_as_task("generate_image", arguments)
        from_task = await tasks.result(created.task.task_id)
        task = await tasks.get(created.task.task_id)
        synchronous = await client.call_tool("generate_image", arguments)

    assert task.status == "failed"
    assert from_task.is_error is True and synchronous.is_error is True
    [text] = [c.text for c in from_task.content if isinstance(c, TextContent)]
    assert [c.text for c in synchronous.content if isinstance(c, TextContent)] == [text]
    assert task.status_message == text
