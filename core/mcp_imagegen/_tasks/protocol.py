"""MCP tasks as protocol revision 2025-11-25 has them, over a :class:`TaskManager`.

The SDK (2.3) has the task types (``mcp_types``) but serves none of the methods:
``tasks/*`` are no spec methods of its, and its ``tools/call`` result sieve would
turn a ``CreateTaskResult`` into an error. So one server middleware (the SDK's
public ``ServerMiddleware`` seam) does the task part of the protocol: it adds
the ``tasks`` capability to ``initialize``, ``execution.taskSupport`` to the task
tools in ``tools/list``, answers a task-augmented ``tools/call`` with a task at
once (running the rest of the SDK's chain, i.e. the real tool call, in the
background) and serves ``tasks/get``, ``tasks/result``, ``tasks/list`` and
``tasks/cancel``. Params are validated with the SDK's request models and results
built from its result models; JSON-RPC framing stays the SDK's. An
``Extension``'s ``MethodBinding`` would also advertise an extension identifier,
which 2025-11-25 tasks are not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import pydantic
import structlog
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CallToolRequestParams,
    CancelTaskRequestParams,
    CancelTaskResult,
    CreateTaskResult,
    GetTaskPayloadRequestParams,
    GetTaskRequestParams,
    GetTaskResult,
    ListTasksResult,
    PaginatedRequestParams,
    ServerTasksCapability,
    ServerTasksRequestsCapability,
    Task,
    TasksCallCapability,
    TasksCancelCapability,
    TasksListCapability,
    TaskStatusNotification,
    TaskStatusNotificationParams,
    TasksToolsCapability,
)
from mcp_types.jsonrpc import INTERNAL_ERROR, INVALID_PARAMS

from mcp_imagegen._tasks.manager import TaskError, TaskManager
from mcp_imagegen.errors import BusyError, ValidationError
from mcp_imagegen.models import TaskRecord

log = structlog.get_logger("mcp_imagegen._tasks")

#: The protocol revision whose core has tasks.
TASKS_VERSION = "2025-11-25"
#: ``_meta`` key relating a message to its task.
RELATED_TASK = "io.modelcontextprotocol/related-task"

_TASK_METHODS = ("tasks/get", "tasks/result", "tasks/list", "tasks/cancel")


def principal(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """Who is calling: the access token's subject (or client id); None without auth."""
    token: AccessToken | None = None
    # The HTTP request is the reliable source (see _http.auth: a stateful
    # session's task holds the context variables of its first request).
    scope = getattr(ctx.request, "scope", None)
    if isinstance(scope, dict) and isinstance(scope.get("user"), AuthenticatedUser):
        token = scope["user"].access_token
    if token is None:
        token = get_access_token()
    if token is None:
        return None
    return token.subject or token.client_id


def task_of(record: TaskRecord) -> Task:
    """The protocol's view of a task record."""
    return Task(
        task_id=record.task_id,
        status=record.status,
        status_message=record.status_message,
        created_at=record.created_at.isoformat(),
        last_updated_at=record.updated_at.isoformat(),
        ttl=record.ttl_ms,
        poll_interval=record.poll_interval_ms,
    )


def _dump(model: pydantic.BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def _invalid(message: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=message)


class TasksMiddleware:
    """Serves 2025-11-25 tasks for ``tools`` through ``manager``.

    Args:
        manager: Runs and answers for the tasks.
        tools: Names of the tools that accept task-augmented calls.
    """

    def __init__(self, manager: TaskManager, tools: Iterable[str]) -> None:
        self.manager = manager
        self.tools = frozenset(tools)

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Answer the task part of the protocol; pass everything else on."""
        method = ctx.method
        if method == "initialize":
            return self._advertise(await call_next(ctx))
        if ctx.protocol_version != TASKS_VERSION:
            return await call_next(ctx)
        if method == "tools/list":
            return self._mark_tools(await call_next(ctx))
        if (
            method == "tools/call"
            and isinstance(ctx.params, dict)
            and ctx.params.get("task") is not None
        ):
            return await self._create(ctx, call_next)
        if method in _TASK_METHODS:
            try:
                return await self._serve(ctx)
            except pydantic.ValidationError as exc:
                fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
                raise _invalid(
                    f"{method}: invalid params ({', '.join(fields)}); expected "
                    '{"taskId": "<id from tools/call>"}'
                ) from None
            except (TaskError, ValidationError) as exc:
                raise _invalid(str(exc)) from None
        return await call_next(ctx)

    # -- capability and tool list ----------------------------------------------

    def _advertise(self, result: HandlerResult) -> HandlerResult:
        if isinstance(result, dict) and result.get("protocolVersion") == TASKS_VERSION:
            capability = ServerTasksCapability(
                list=TasksListCapability(),
                cancel=TasksCancelCapability(),
                requests=ServerTasksRequestsCapability(
                    tools=TasksToolsCapability(call=TasksCallCapability())
                ),
            )
            result.setdefault("capabilities", {})["tasks"] = _dump(capability)
        return result

    def _mark_tools(self, result: HandlerResult) -> HandlerResult:
        if isinstance(result, dict):
            for tool in result.get("tools") or []:
                if isinstance(tool, dict) and tool.get("name") in self.tools:
                    tool["execution"] = {"taskSupport": "optional"}
        return result

    # -- tools/call with a task --------------------------------------------------

    async def _create(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        try:
            params = CallToolRequestParams.model_validate(ctx.params, by_name=False)
        except pydantic.ValidationError:
            # The SDK's own validation gives the usual error.
            return await call_next(ctx)
        if params.name not in self.tools:
            raise _invalid(
                f"tool {params.name!r} does not run as a task; call it without "
                f"'task' (tools that do: {', '.join(sorted(self.tools))})"
            )
        plain = {k: v for k, v in (ctx.params or {}).items() if k != "task"}
        inner = replace(ctx, params=plain)
        session = ctx.session

        async def work() -> dict[str, Any]:
            result = await call_next(inner)
            return dict(result) if isinstance(result, dict) else {}

        async def notify(record: TaskRecord) -> None:
            notification = TaskStatusNotification(
                params=TaskStatusNotificationParams(**task_of(record).model_dump())
            )
            # Types-only in SDK 2.3 (absent from its ServerNotification union),
            # yet serialised like any notification model.
            await session.send_notification(notification)  # type: ignore[arg-type]

        ttl = params.task.ttl if params.task is not None else None
        try:
            record = await self.manager.start(
                params.name, work, owner=principal(ctx), ttl_ms=ttl, listener=notify
            )
        except TaskError as exc:
            raise _invalid(str(exc)) from None
        except BusyError as exc:
            raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from None
        return _dump(CreateTaskResult(task=task_of(record)))

    # -- tasks/* -------------------------------------------------------------------

    async def _serve(self, ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
        owner = principal(ctx)
        params = ctx.params or {}
        if ctx.method == "tasks/list":
            cursor = PaginatedRequestParams.model_validate(params, by_name=False).cursor
            records, next_cursor = await self.manager.list(owner, cursor)
            return _dump(
                ListTasksResult(
                    tasks=[task_of(r) for r in records], next_cursor=next_cursor
                )
            )
        if ctx.method == "tasks/get":
            got = GetTaskRequestParams.model_validate(params, by_name=False)
            record = await self.manager.get(got.task_id, owner)
            return _dump(GetTaskResult(**task_of(record).model_dump()))
        if ctx.method == "tasks/cancel":
            cancel = CancelTaskRequestParams.model_validate(params, by_name=False)
            record = await self.manager.cancel(cancel.task_id, owner)
            return _dump(CancelTaskResult(**task_of(record).model_dump()))
        task_id = GetTaskPayloadRequestParams.model_validate(
            params, by_name=False
        ).task_id
        record = await self.manager.wait(task_id, owner)
        if record.status == "cancelled":
            raise _invalid(
                f"taskId: task {record.task_id} was cancelled; it has no result"
            )
        if record.result is None:
            raise MCPError(
                code=INTERNAL_ERROR,
                message=f"task {record.task_id} {record.status}: "
                f"{record.status_message}",
            )
        meta = dict(record.result.get("_meta") or {})
        meta[RELATED_TASK] = {"taskId": record.task_id}
        return {**record.result, "_meta": meta}
