"""Tasks over streamable HTTP with authentication: each principal sees its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent
from mcp_types.jsonrpc import INVALID_PARAMS

from tests.http.conftest import StartServer, start_server  # noqa: F401
from tests.http_auth.conftest import Running, mcp_session, serve  # noqa: F401
from tests.tasks.conftest import SMALL, TaskClient

pytestmark = pytest.mark.anyio

ANN, BOB = "ann-token-0123456789abcdef", "bob-token-0123456789abcdef"


async def test_a_task_is_visible_only_to_the_principal_that_created_it(
    serve: Callable[[dict[str, Any]], Running],  # noqa: F811
) -> None:
    running = serve({"mode": "bearer", "tokens": f"{ANN},{BOB}"})
    async with mcp_session(running.url, ANN) as ann_session:
        ann = TaskClient(ann_session)
        created = await ann.call_as_task("generate_image", SMALL, ttl=60_000)
        task_id = created.task.task_id
        async with mcp_session(running.url, BOB) as bob_session:
            bob = TaskClient(bob_session)
            errors = []
            for call in (bob.get, bob.result, bob.cancel):
                with pytest.raises(MCPError) as error:
                    await call(task_id)
                errors.append(error.value)
            bob_list = await bob.list()
            bob_generation = await bob_session.call_tool(
                "get_generation", {"generation_id": task_id}
            )
        result = await ann.result(task_id)
        ann_list = await ann.list()
        ann_generation = await ann_session.call_tool(
            "get_generation", {"generation_id": task_id}
        )

    assert {e.code for e in errors} == {INVALID_PARAMS}
    assert all("no task" in e.message for e in errors)
    assert bob_list.tasks == []
    assert bob_generation.is_error is True
    texts = [c.text for c in bob_generation.content if isinstance(c, TextContent)]
    assert "no generation" in " ".join(texts)
    assert result.is_error is not True
    assert [t.task_id for t in ann_list.tasks] == [task_id]
    assert ann_generation.structured_content == result.structured_content


async def test_a_client_that_disconnects_gets_the_result_after_reconnecting(
    start_server: StartServer,  # noqa: F811
) -> None:
    # A stateful session, closed while its task runs: the task is the server's.
    server = start_server(
        config={
            "server.http": {"stateless": False},
            "backends.placeholder": {"delay_ms": 100},
        }
    )
    async with server.session() as first:
        tasks = TaskClient(first)
        created = await tasks.call_as_task(
            "generate_image", {**SMALL, "steps": 20}, ttl=60_000
        )
        before = await tasks.get(created.task.task_id)
    async with server.session() as second:
        tasks = TaskClient(second)
        result = await tasks.result(created.task.task_id)
        task = await tasks.get(created.task.task_id)

    assert before.status == "working"
    assert task.status == "completed"
    assert result.is_error is not True
    assert result.structured_content is not None
    assert len(result.structured_content["images"]) == 1


async def test_one_client_cannot_hold_more_than_its_share_of_tasks(
    start_server: StartServer,  # noqa: F811
) -> None:
    server = start_server(
        config={
            "server.auth": {"mode": "bearer"},
            "server.tasks": {"max_per_client": 1},
            "backends.placeholder": {"delay_ms": 100},
        },
        env={"MCP_IMAGEGEN_SERVER__AUTH__TOKENS": f"{ANN},{BOB}"},
    )
    async with (
        server.session(Authorization=f"Bearer {ANN}") as ann_session,
        server.session(Authorization=f"Bearer {BOB}") as bob_session,
    ):
        ann = TaskClient(ann_session)
        long = await ann.call_as_task("generate_image", {**SMALL, "steps": 100})
        # Ann's second, as a task and as a call: refused; Bob's share is his own.
        with pytest.raises(MCPError) as as_task:
            await ann.call_as_task("generate_image", SMALL)
        as_call = await ann_session.call_tool("generate_image", SMALL)
        bobs = await bob_session.call_tool("generate_image", SMALL)
        await ann.cancel(long.task.task_id)
        await ann.until_done(long.task.task_id)
        # Her share is free again once the task has ended.
        again = await ann_session.call_tool("generate_image", SMALL)

    assert "too many tasks for this client" in as_task.value.message
    assert "server.tasks.max_per_client = 1" in as_task.value.message
    assert as_call.is_error is True
    texts = " ".join(c.text for c in as_call.content if isinstance(c, TextContent))
    assert "too many tasks for this client" in texts
    assert bobs.is_error is not True
    assert again.is_error is not True
