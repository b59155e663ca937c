"""MCP tasks as protocol revision 2026-07-28 has them: the tasks extension (SEP-2663).

In 2026-07-28 tasks left the core protocol for the ``io.modelcontextprotocol/tasks``
extension, which the SDK's extension mechanism (``mcp.server.extension``) serves
as it is: the identifier is advertised under ``capabilities.extensions`` of
``server/discover``, ``tasks/get``, ``tasks/update`` and ``tasks/cancel`` are
method bindings gated to 2026-07-28, and ``intercept_tool_call`` answers a
call of a task tool with a ``CreateTaskResult`` (``resultType: "task"``). No
middleware is needed here, unlike for 2025-11-25 (:mod:`.protocol`): on a
2026-era connection the SDK leaves a result with an extension ``resultType`` to
the extension instead of sieving it against ``CallToolResult``.

Tasks are made by the same :class:`TaskManager` as 2025-11-25 tasks, so a task is
one record whichever revision created it: ``tasks/get`` of either revision
answers for it (the owner check is the same).

The server decides: a client that declares the extension in the request's
``_meta`` client capabilities gets a task for every call of a task tool; a
client that does not gets the ordinary synchronous call (with the
``server.tasks.sync_wait`` fallback). Not served: ``notifications/tasks`` (the
SDK's ``subscriptions/listen`` handler has a closed event vocabulary and drops
the ``taskIds`` filter; clients poll ``tasks/get``, which the extension makes the
normative way) and ``input_required`` (no task tool asks the client for input).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pydantic
import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolRequestParams, RequestParams
from mcp_types.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
)
from pydantic import Field

from mcp_imagegen._tasks.manager import TaskError, TaskManager
from mcp_imagegen._tasks.protocol import RELATED_TASK, principal
from mcp_imagegen.errors import BusyError, ValidationError
from mcp_imagegen.models import TaskRecord

log = structlog.get_logger("mcp_imagegen._tasks")

#: The extension's identifier (capability key and ``_meta`` namespace).
EXTENSION_ID = "io.modelcontextprotocol/tasks"
#: The protocol revisions whose tasks are this extension's.
EXTENSION_VERSIONS = frozenset({"2026-07-28"})
#: Where a 2026-07-28 request declares the client's capabilities.
CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"

_TASK_ID_HINT = '{"taskId": "<taskId from the tools/call result>"}'


class TaskIdParams(RequestParams):
    """Params of ``tasks/get`` and ``tasks/cancel``.

    ``taskId`` is checked by the handler, not here: the SDK answers a params
    model's failure with a bare "Invalid request parameters", where a client
    should learn which parameter is wrong and what is accepted.
    """

    task_id: object = Field(default=None, alias="taskId")


class UpdateTaskParams(TaskIdParams):
    """Params of ``tasks/update``: responses to a task's input requests."""

    input_responses: object = Field(default=None, alias="inputResponses")


def detailed_task(record: TaskRecord) -> dict[str, Any]:
    """The extension's ``DetailedTask`` for a task record.

    A tool result with ``isError`` (a failed generation, as the synchronous call
    returns it) is a ``completed`` task carrying that result, as the extension
    requires; ``failed`` with a JSON-RPC error is left for a task with no
    result at all (its runner died).
    """
    task: dict[str, Any] = {
        "taskId": record.task_id,
        "status": record.status,
        "statusMessage": record.status_message,
        "createdAt": record.created_at.isoformat(),
        "lastUpdatedAt": record.updated_at.isoformat(),
        "ttlMs": record.ttl_ms,
        "pollIntervalMs": record.poll_interval_ms,
    }
    if record.status in ("completed", "failed") and record.result is not None:
        task["status"] = "completed"
        meta = dict(record.result.get("_meta") or {})
        meta[RELATED_TASK] = {"taskId": record.task_id}
        task["result"] = {**record.result, "resultType": "complete", "_meta": meta}
    elif record.status in ("completed", "failed"):
        task["status"] = "failed"
        task["error"] = {
            "code": INTERNAL_ERROR,
            "message": record.status_message or "the task failed",
        }
    return task


def declares_extension(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client capabilities include the tasks extension.

    Read from the request itself: the extension forbids a task to a client
    that did not declare it on that very request.
    """
    meta = ctx.meta or {}
    declared = meta.get(CLIENT_CAPABILITIES_META)
    if isinstance(declared, dict):
        extensions = declared.get("extensions")
        return isinstance(extensions, dict) and EXTENSION_ID in extensions
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and EXTENSION_ID in (capabilities.extensions or {}))


def _invalid(message: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=message)


class TasksExtension(Extension):
    """Serves the 2026-07-28 tasks extension for ``tools`` through ``manager``.

    Args:
        manager: Runs and answers for the tasks (shared with 2025-11-25 tasks).
        tools: Names of the tools whose calls become tasks.
    """

    identifier = EXTENSION_ID

    def __init__(self, manager: TaskManager, tools: Iterable[str]) -> None:
        self.manager = manager
        self.task_tools = frozenset(tools)

    def settings(self) -> dict[str, Any]:
        """No settings: the extension defines none, an empty object means support."""
        return {}

    def methods(self) -> Sequence[MethodBinding]:
        """``tasks/get``, ``tasks/update`` and ``tasks/cancel``, for 2026-07-28 only.

        Under 2025-11-25 ``tasks/get`` and ``tasks/cancel`` are core methods
        served by :class:`~mcp_imagegen._tasks.protocol.TasksMiddleware` before
        these handlers are reached; ``tasks/update`` does not exist there.
        """
        return (
            MethodBinding("tasks/get", TaskIdParams, self._get, EXTENSION_VERSIONS),
            MethodBinding(
                "tasks/update", UpdateTaskParams, self._update, EXTENSION_VERSIONS
            ),
            MethodBinding(
                "tasks/cancel", TaskIdParams, self._cancel, EXTENSION_VERSIONS
            ),
        )

    async def intercept_tool_call(
        self,
        params: CallToolRequestParams,
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        """Answer a task tool's call with a task if the client declares tasks."""
        if (
            ctx.protocol_version not in EXTENSION_VERSIONS
            or params.name not in self.task_tools
            or not declares_extension(ctx)
        ):
            return await call_next(ctx)

        async def work() -> dict[str, Any]:
            result = await call_next(ctx)
            if isinstance(result, pydantic.BaseModel):
                return result.model_dump(by_alias=True, mode="json", exclude_none=True)
            return dict(result) if isinstance(result, dict) else {}

        try:
            record = await self.manager.start(params.name, work, owner=principal(ctx))
        except TaskError as exc:
            raise _invalid(str(exc)) from None
        except BusyError as exc:
            raise MCPError(code=INTERNAL_ERROR, message=str(exc)) from None
        created = detailed_task(record)
        created["resultType"] = "task"
        return created

    # -- tasks/* ---------------------------------------------------------------

    async def _get(
        self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams
    ) -> HandlerResult:
        self._require(ctx, "tasks/get")
        record = await self._call(self.manager.get, params.task_id, ctx)
        return detailed_task(record)

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams
    ) -> HandlerResult:
        self._require(ctx, "tasks/cancel")
        record = await self._call(self.manager.get, params.task_id, ctx)
        # Cancellation is cooperative here: a task that ended meanwhile is
        # acknowledged too (the extension lets it end other than cancelled).
        if not record.terminal:
            try:
                await self.manager.cancel(record.task_id, principal(ctx))
            except TaskError:
                pass  # it ended between the two reads
        return {}

    async def _update(
        self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams
    ) -> HandlerResult:
        self._require(ctx, "tasks/update")
        record = await self._call(self.manager.get, params.task_id, ctx)
        if not isinstance(params.input_responses, dict):
            raise _invalid(
                "tasks/update: params.inputResponses must be an object mapping "
                "input request keys to responses"
            )
        # No task of this server asks for input: every response answers a key
        # that is not outstanding, which the extension says to ignore.
        log.debug(
            "task_update_ignored",
            task_id=record.task_id,
            keys=len(params.input_responses),
        )
        return {}

    def _require(self, ctx: ServerRequestContext[Any, Any], method: str) -> None:
        if not declares_extension(ctx):
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message=f"{method}: declare the {EXTENSION_ID} extension in the "
                "request's client capabilities to use tasks",
                data={"requiredCapabilities": {"extensions": {EXTENSION_ID: {}}}},
            )

    async def _call(
        self, method: Any, task_id: object, ctx: ServerRequestContext[Any, Any]
    ) -> TaskRecord:
        if task_id is None:
            raise _invalid(
                f"{ctx.method}: params.taskId is missing; expected {_TASK_ID_HINT}"
            )
        try:
            record: TaskRecord = await method(task_id, principal(ctx))
        except (TaskError, ValidationError) as exc:
            message = str(exc)
            if not message.startswith("taskId"):
                message = f"taskId: {message}"
            raise _invalid(f"{ctx.method}: {message}") from None
        return record


__all__ = [
    "EXTENSION_ID",
    "EXTENSION_VERSIONS",
    "TaskIdParams",
    "TasksExtension",
    "UpdateTaskParams",
    "declares_extension",
    "detailed_task",
]
