"""Fixtures of the MCP task tests: in-memory clients speaking 2025-11-25."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp
import pytest
from mcp import ClientSession
from mcp.client.extension import ClientExtension, NotificationBinding
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    CancelTaskRequest,
    CancelTaskRequestParams,
    CancelTaskResult,
    CreateTaskResult,
    GetTaskPayloadRequest,
    GetTaskPayloadRequestParams,
    GetTaskRequest,
    GetTaskRequestParams,
    GetTaskResult,
    ListTasksRequest,
    ListTasksResult,
    TaskMetadata,
    TaskStatusNotificationParams,
)

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._mcp.server import ImageGenServer
from mcp_imagegen._plugins import PluginManager

#: A placeholder slow enough to watch: 100 ms per step.
SLOW = {"backends": {"placeholder": {"delay_ms": 100}}}
#: Arguments of a small generation (the steps set how long it takes).
SMALL = {"prompt": "a lighthouse", "width": 64, "height": 64, "seed": 7}


@dataclass
class StatusWatcher(ClientExtension):
    """Collects ``notifications/tasks/status`` (the SDK's client drops them)."""

    identifier = "com.example/task-status-watcher"
    seen: list[TaskStatusNotificationParams] = field(default_factory=list)

    def notifications(self) -> list[NotificationBinding[Any]]:
        async def keep(params: TaskStatusNotificationParams) -> None:
            self.seen.append(params)

        return [
            NotificationBinding(
                method="notifications/tasks/status",
                params_type=TaskStatusNotificationParams,
                handler=keep,
            )
        ]


class TaskClient:
    """A 2025-11-25 requester of tasks over a real MCP client session."""

    def __init__(self, client: mcp.Client | ClientSession) -> None:
        self.session = client.session if isinstance(client, mcp.Client) else client

    async def call_as_task(
        self, name: str, arguments: dict[str, Any], ttl: int | None = None
    ) -> CreateTaskResult:
        """``tools/call`` with ``params.task``.

        The SDK's client checks every ``tools/call`` answer against
        ``CallToolResult`` (it has no task support), so this request goes out
        through the session's dispatcher: same framing, no result check.
        """
        params = CallToolRequestParams(
            name=name, arguments=arguments, task=TaskMetadata(ttl=ttl)
        ).model_dump(by_alias=True, mode="json", exclude_none=True)
        if ttl is None:
            params["task"] = {}
        dispatcher = self.session._dispatcher
        raw = await dispatcher.send_raw_request("tools/call", params, {})
        return CreateTaskResult.model_validate(raw)

    async def get(self, task_id: str) -> GetTaskResult:
        return await self.session.send_request(
            GetTaskRequest(params=GetTaskRequestParams(task_id=task_id)),
            GetTaskResult,
        )

    async def until(
        self, task_id: str, check: Callable[[GetTaskResult], bool], polls: int = 1200
    ) -> GetTaskResult:
        """Poll tasks/get until ``check`` holds (bounded: ``polls`` × 50 ms)."""
        for _ in range(polls):
            task = await self.get(task_id)
            if check(task):
                return task
            await anyio.sleep(0.05)
        raise AssertionError(f"task never reached the state; last: {task}")

    async def until_done(
        self, task_id: str, messages: list[str] | None = None
    ) -> GetTaskResult:
        """Poll tasks/get until the task ends; status messages seen go to messages."""

        def done(task: GetTaskResult) -> bool:
            seen = task.status_message
            if messages is not None and seen and (not messages or messages[-1] != seen):
                messages.append(seen)
            return task.status != "working"

        return await self.until(task_id, done)

    async def result(self, task_id: str) -> CallToolResult:
        # tasks/result blocks until the task ends: bounded, so a task that never
        # ends fails the test instead of hanging it.
        with anyio.fail_after(60):
            return await self.session.send_request(
                GetTaskPayloadRequest(
                    params=GetTaskPayloadRequestParams(task_id=task_id)
                ),
                CallToolResult,
            )

    async def cancel(self, task_id: str) -> CancelTaskResult:
        return await self.session.send_request(
            CancelTaskRequest(params=CancelTaskRequestParams(task_id=task_id)),
            CancelTaskResult,
        )

    async def list(self) -> ListTasksResult:
        return await self.session.send_request(ListTasksRequest(), ListTasksResult)


@pytest.fixture
def make_server(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., ImageGenServer]:
    """A fresh server for some settings (images in the test's directory)."""

    def make(data: dict[str, Any] | None = None) -> ImageGenServer:
        return create_server(make_settings(data), plugin_manager)

    return make


def legacy_client(
    server: ImageGenServer, watcher: StatusWatcher | None = None
) -> mcp.Client:
    """An in-memory client that negotiates 2025-11-25 (the revision with tasks)."""
    return mcp.Client(
        server, mode="legacy", extensions=[watcher] if watcher is not None else None
    )
