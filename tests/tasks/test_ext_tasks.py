"""MCP tasks under protocol revision 2026-07-28: the tasks extension (SEP-2663).

The SDK's Python client knows no task shapes, so task requests go out through
its session's dispatcher with the client's own 2026 ``_meta`` envelope (the
same framing as every request), their results unchecked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp
import pytest
from mcp.client.extension import advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from mcp_types.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND

from mcp_imagegen import new_task_id
from mcp_imagegen._mcp.server import ImageGenServer
from mcp_imagegen._tasks.extension import EXTENSION_ID
from tests.http_auth.conftest import Running, mcp_session, serve  # noqa: F401
from tests.tasks.conftest import SLOW, SMALL, TaskClient, legacy_client
from tests.tasks.test_protocol import VOLATILE

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
ANN, BOB = "ann-token-0123456789abcdef", "bob-token-0123456789abcdef"


def modern_client(server: Any, *, declare: bool = True) -> mcp.Client:
    """A client on 2026-07-28, declaring the tasks extension or not."""
    return mcp.Client(
        server, mode=MODERN, extensions=[advertise(EXTENSION_ID)] if declare else None
    )


@asynccontextmanager
async def http_client(url: str, token: str) -> AsyncIterator[mcp.Client]:
    """A 2026-07-28 client declaring the extension, over HTTP with a bearer token."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with modern_client(streamable_http_client(url, http_client=http)) as c:
            yield c


async def raw(
    client: mcp.Client, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    """One request framed as the client frames any (2026 ``_meta``); no result check."""
    session = client.session
    data: dict[str, Any] = {"method": method, "params": params}
    opts: dict[str, Any] = {}
    session._stamp(data, opts)  # type: ignore[arg-type]
    dispatcher = session._dispatcher
    result = await dispatcher.send_raw_request(method, data["params"], opts)  # type: ignore[arg-type]
    return dict(result)


async def _until_done(client: mcp.Client, task_id: str) -> list[dict[str, Any]]:
    """Poll tasks/get until the task ends (bounded: 600 × 50 ms); every answer."""
    seen = []
    for _ in range(600):
        task = await raw(client, "tasks/get", {"taskId": task_id})
        seen.append(task)
        if task["status"] not in ("working", "input_required"):
            return seen
        await anyio.sleep(0.05)
    raise AssertionError(f"task never ended; last: {seen[-1]}")


def _images(structured: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in image.items() if k not in VOLATILE}
        for image in structured["images"]
    ]


async def test_discover_advertises_the_extension_with_no_settings(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server(), mode="auto") as client:
        version = client.protocol_version
        extensions = client.server_capabilities.extensions

    assert version == MODERN
    assert extensions is not None
    assert extensions[EXTENSION_ID] == {}


async def test_a_task_is_followed_to_the_result_of_the_synchronous_call(
    make_server: Callable[..., ImageGenServer],
) -> None:
    arguments = {**SMALL, "steps": 10}
    async with modern_client(make_server(SLOW)) as client:
        created = await raw(
            client, "tools/call", {"name": "generate_image", "arguments": arguments}
        )
        seen = await _until_done(client, created["taskId"])
    async with modern_client(make_server(SLOW), declare=False) as plain:
        synchronous = await plain.call_tool("generate_image", arguments)

    assert created["resultType"] == "task"
    assert created["status"] == "working"
    assert created["ttlMs"] == 3_600_000 and created["pollIntervalMs"] == 1000
    assert {"createdAt", "lastUpdatedAt"} <= created.keys()
    assert all(task["resultType"] == "complete" for task in seen)
    assert any("step" in task.get("statusMessage", "") for task in seen)
    done = seen[-1]
    assert done["status"] == "completed"
    result = done["result"]
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {
        "taskId": created["taskId"]
    }
    assert not synchronous.is_error and not result["isError"]
    assert synchronous.structured_content is not None
    assert _images(result["structuredContent"]) == _images(
        synchronous.structured_content
    )
    assert [c["type"] for c in result["content"]] == [
        c.type for c in synchronous.content
    ]


async def test_a_client_without_the_extension_gets_no_task(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with modern_client(make_server(), declare=False) as client:
        result = await client.call_tool("generate_image", SMALL)
        with pytest.raises(MCPError) as refused:
            await raw(client, "tasks/get", {"taskId": new_task_id()})

    assert isinstance(result, CallToolResult) and not result.is_error
    assert result.structured_content is not None
    assert len(result.structured_content["images"]) == 1
    assert refused.value.code == -32021
    assert EXTENSION_ID in refused.value.message


async def test_a_failed_generation_is_a_completed_task_with_the_same_error(
    make_server: Callable[..., ImageGenServer],
) -> None:
    arguments = {**SMALL, "backend": "no-such-backend"}
    async with modern_client(make_server()) as client:
        created = await raw(
            client, "tools/call", {"name": "generate_image", "arguments": arguments}
        )
        done = (await _until_done(client, created["taskId"]))[-1]
    async with modern_client(make_server(), declare=False) as plain:
        synchronous = await plain.call_tool("generate_image", arguments)

    # A tool error is a result (isError), not a JSON-RPC error: "completed".
    assert done["status"] == "completed"
    assert done["result"]["isError"] is True
    assert synchronous.is_error is True
    [text] = [c.text for c in synchronous.content if isinstance(c, TextContent)]
    assert done["result"]["content"] == [{"type": "text", "text": text}]
    assert "no-such-backend" in text


async def test_a_task_cancelled_mid_way_stores_nothing(
    make_server: Callable[..., ImageGenServer], image_dir: Path
) -> None:
    async with modern_client(make_server(SLOW)) as client:
        created = await raw(
            client,
            "tools/call",
            {"name": "generate_image", "arguments": {**SMALL, "steps": 100}},
        )
        task_id = created["taskId"]
        for _ in range(600):
            task = await raw(client, "tasks/get", {"taskId": task_id})
            if "step" in task.get("statusMessage", ""):
                break
            await anyio.sleep(0.05)
        acknowledged = await raw(client, "tasks/cancel", {"taskId": task_id})
        after = await raw(client, "tasks/get", {"taskId": task_id})
        again = await raw(client, "tasks/cancel", {"taskId": task_id})
        update = await raw(
            client, "tasks/update", {"taskId": task_id, "inputResponses": {}}
        )

    assert "step" in task["statusMessage"]
    assert acknowledged["resultType"] == "complete"
    assert set(acknowledged) <= {"resultType", "_meta"}
    assert after["status"] == "cancelled"
    assert "result" not in after and "error" not in after
    # Cancelling an ended task, or updating one that asks for no input: acked.
    assert again["resultType"] == update["resultType"] == "complete"
    assert not [p async for p in anyio.Path(image_dir).rglob("*.png")]


@pytest.mark.parametrize("method", ["tasks/get", "tasks/cancel", "tasks/update"])
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"taskId": new_task_id()}, "unknown, expired, or not yours"),
        ({"taskId": "../../etc/passwd"}, "Invalid task id"),
        ({"taskId": 42}, "taskId"),
        ({}, "taskId"),
    ],
    ids=["unknown", "malformed", "not-a-string", "missing"],
)
async def test_bad_task_ids_are_invalid_params(
    make_server: Callable[..., ImageGenServer],
    method: str,
    params: dict[str, Any],
    expected: str,
) -> None:
    if method == "tasks/update":
        params = {**params, "inputResponses": {}}
    async with modern_client(make_server()) as client:
        with pytest.raises(MCPError) as error:
            await raw(client, method, params)
        # The server goes on serving.
        listed = await client.list_tools()

    assert error.value.code == INVALID_PARAMS
    assert expected in error.value.message
    assert listed.tools


async def test_each_revision_has_its_own_task_methods(
    make_server: Callable[..., ImageGenServer],
) -> None:
    task_id = new_task_id()
    async with modern_client(make_server()) as client:
        modern = []
        for method in ("tasks/result", "tasks/list"):
            with pytest.raises(MCPError) as error:
                await raw(client, method, {"taskId": task_id})
            modern.append(error.value.code)
    async with legacy_client(make_server()) as client:
        with pytest.raises(MCPError) as error:
            dispatcher = client.session._dispatcher
            await dispatcher.send_raw_request(
                "tasks/update", {"taskId": task_id, "inputResponses": {}}, {}
            )
        legacy = error.value.code

    assert modern == [METHOD_NOT_FOUND, METHOD_NOT_FOUND]
    assert legacy == METHOD_NOT_FOUND


async def test_one_record_for_both_revisions_and_only_for_its_principal(
    serve: Callable[[dict[str, Any]], Running],  # noqa: F811
) -> None:
    running = serve({"mode": "bearer", "tokens": f"{ANN},{BOB}"})
    async with http_client(running.url, ANN) as ann:
        created = await raw(
            ann, "tools/call", {"name": "generate_image", "arguments": SMALL}
        )
        task_id = created["taskId"]
        async with http_client(running.url, BOB) as bob:
            errors = []
            for method in ("tasks/get", "tasks/cancel", "tasks/update"):
                with pytest.raises(MCPError) as error:
                    await raw(bob, method, {"taskId": task_id, "inputResponses": {}})
                errors.append(error.value)
        done = (await _until_done(ann, task_id))[-1]
    async with mcp_session(running.url, ANN) as legacy_session:
        legacy = TaskClient(legacy_session)
        legacy_task = await legacy.get(task_id)
        legacy_result = await legacy.result(task_id)

    assert {e.code for e in errors} == {INVALID_PARAMS}
    assert all("no task" in e.message for e in errors)
    assert done["status"] == "completed"
    assert (legacy_task.task_id, legacy_task.status) == (task_id, "completed")
    assert legacy_result.structured_content == done["result"]["structuredContent"]
