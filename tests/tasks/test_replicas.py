"""Tasks across two HTTP replicas sharing one task store (SeaweedFS S3, or a directory).

Every replica is a real ``mcp-imagegen serve --transport http`` subprocess
(stateless sessions, the default): a task created on one is polled, fetched,
cancelled and reported on the other, as behind a load balancer.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_types import CallToolResult, GetTaskResult, TextContent

from tests.http.conftest import HttpServer, StartServer, start_server  # noqa: F401
from tests.http.test_replicas import start_replica
from tests.s3.conftest import seaweed  # noqa: F401  (a fixture used here)
from tests.s3.seaweed import SeaweedServer
from tests.tasks.conftest import SMALL, TaskClient
from tests.tasks.test_protocol import _images

pytestmark = [pytest.mark.anyio, pytest.mark.s3]

#: Polls of tasks/get or get_generation before a test gives up (50 ms apart).
POLLS = 1200


def _settings(
    delay_ms: int = 100, heartbeat: float = 0.3, poll: float = 0.1
) -> dict[str, str]:
    """Replica settings as environment variables (the S3 table is the file's)."""
    return {
        "MCP_IMAGEGEN_BACKENDS__PLACEHOLDER__DELAY_MS": str(delay_ms),
        "MCP_IMAGEGEN_SERVER__TASKS__HEARTBEAT_INTERVAL": f"PT{heartbeat}S",
        "MCP_IMAGEGEN_SERVER__TASKS__POLL_INTERVAL": f"PT{poll}S",
    }


def _pair(
    start_server: StartServer,  # noqa: F811
    s3: SeaweedServer,
    **settings: Any,
) -> tuple[HttpServer, HttpServer]:
    prefix = f"tasks-replicas-{uuid.uuid4().hex[:12]}/"
    env = _settings(**settings)
    return (
        start_replica(start_server, s3, prefix, env),
        start_replica(start_server, s3, prefix, env),
    )


def _stepping(task: GetTaskResult) -> bool:
    """The runner has reported a generation step."""
    return "step" in (task.status_message or "")


def _text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_a_task_created_on_a_is_followed_and_fetched_on_b(
    start_server: StartServer,  # noqa: F811
    seaweed: SeaweedServer,  # noqa: F811  (the imported fixture)
) -> None:
    # A long heartbeat: B can follow A's progress only through the records A
    # writes when its status message changes (at most one per poll_interval).
    replica_a, replica_b = _pair(start_server, seaweed, heartbeat=60, poll=0.2)
    arguments = {**SMALL, "steps": 30}
    messages: list[str] = []
    with anyio.fail_after(180):
        async with replica_a.session() as on_a:
            created = await TaskClient(on_a).call_as_task(
                "generate_image", arguments, ttl=60_000
            )
        task_id = created.task.task_id
        async with replica_b.session() as on_b:
            tasks = TaskClient(on_b)
            final = await tasks.until_done(task_id, messages)
            from_b = await tasks.result(task_id)
        async with replica_a.session() as on_a:
            synchronous: Any = await on_a.call_tool("generate_image", arguments)

    assert final.status == "completed", final
    assert from_b.is_error is not True, _text(from_b)
    assert from_b.meta == {"io.modelcontextprotocol/related-task": {"taskId": task_id}}
    assert _images(from_b) == _images(synchronous)
    steps = [m for m in messages if "step" in m]
    # 30 steps over 3 s, shared every 0.2 s: B sees the steps advance.
    assert len(steps) >= 3, messages


async def test_the_fallback_generation_started_on_a_is_collected_on_b(
    start_server: StartServer,  # noqa: F811
    seaweed: SeaweedServer,  # noqa: F811  (the imported fixture)
) -> None:
    replica_a, replica_b = _pair(start_server, seaweed)
    arguments = {**SMALL, "steps": 10}
    with anyio.fail_after(180):
        async with replica_a.session() as on_a:
            at_once: Any = await on_a.call_tool(
                "generate_image", {**arguments, "wait": False}
            )
            synchronous: Any = await on_a.call_tool("generate_image", arguments)
        generation_id = at_once.structured_content["generation_id"]
        async with replica_b.session() as on_b:
            for _ in range(POLLS):
                later: Any = await on_b.call_tool(
                    "get_generation", {"generation_id": generation_id}
                )
                assert not later.is_error, _text(later)
                if later.structured_content.get("status") != "working":
                    break
                await anyio.sleep(0.05)

    assert at_once.structured_content["status"] == "working"
    assert "status" not in later.structured_content
    assert _images(later) == _images(synchronous)
    assert [type(c) for c in later.content] == [type(c) for c in synchronous.content]


async def test_cancelling_on_b_stops_the_task_running_on_a_and_stores_nothing(
    start_server: StartServer,  # noqa: F811
    seaweed: SeaweedServer,  # noqa: F811  (the imported fixture)
) -> None:
    replica_a, replica_b = _pair(start_server, seaweed, delay_ms=200)
    with anyio.fail_after(180):
        async with replica_a.session() as on_a:
            on_a_tasks = TaskClient(on_a)
            # 50 steps of 0.2 s: 10 s unless cancelled.
            created = await on_a_tasks.call_as_task(
                "generate_image", {**SMALL, "steps": 50}, ttl=60_000
            )
            task_id = created.task.task_id
            async with replica_b.session() as on_b:
                on_b_tasks = TaskClient(on_b)
                seen = await on_b_tasks.until(task_id, _stepping)
                cancelled = await on_b_tasks.cancel(task_id)
                on_a_final = await on_a_tasks.until_done(task_id)
                on_b_final = await on_b_tasks.until_done(task_id)
                listed: Any = await on_b.call_tool("list_images", {})

    assert "step" in (seen.status_message or "")
    assert cancelled.status == "cancelled"
    assert on_a_final.status == on_b_final.status == "cancelled"
    assert listed.structured_content["images"] == []


async def test_a_task_whose_replica_is_killed_is_reported_failed_by_the_other(
    start_server: StartServer,  # noqa: F811
    seaweed: SeaweedServer,  # noqa: F811  (the imported fixture)
) -> None:
    replica_a, replica_b = _pair(start_server, seaweed, delay_ms=200)
    with anyio.fail_after(180):
        async with replica_a.session(terminate_on_close=False) as on_a:
            created = await TaskClient(on_a).call_as_task(
                "generate_image", {**SMALL, "steps": 50}, ttl=60_000
            )
            task_id = created.task.task_id
            async with replica_b.session() as on_b:
                tasks = TaskClient(on_b)
                seen = await tasks.until(task_id, _stepping)
                # No goodbye: the runner cannot record anything any more.
                replica_a.process.send_signal(signal.SIGKILL)
                replica_a.process.wait()
                final = await tasks.until_done(task_id)

    assert seen.status == "working"
    assert final.status == "failed"
    assert final.status_message is not None
    assert "stopped" in final.status_message
    assert "no heartbeat" in final.status_message


async def test_two_replicas_on_one_file_directory_share_their_tasks(
    start_server: StartServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    storage = {"storage.file": {"directory": str(tmp_path / "shared-images")}}
    env = _settings()
    replica_a = start_server(config=storage, env=env)
    replica_b = start_server(config=storage, env=env)
    arguments = {**SMALL, "steps": 10}
    with anyio.fail_after(120):
        async with replica_a.session() as on_a:
            created = await TaskClient(on_a).call_as_task(
                "generate_image", arguments, ttl=60_000
            )
            synchronous: Any = await on_a.call_tool("generate_image", arguments)
        async with replica_b.session() as on_b:
            tasks = TaskClient(on_b)
            final = await tasks.until_done(created.task.task_id)
            from_b = await tasks.result(created.task.task_id)

    assert final.status == "completed"
    assert _images(from_b) == _images(synchronous)
    assert (tmp_path / "shared-images" / "tasks").is_dir()
