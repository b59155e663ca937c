"""MCP tasks: records, the runner that executes tool calls in the background.

:mod:`.memory` keeps records in this process; :mod:`.manager` starts tasks in
the server lifespan's task group and answers for any task of its store;
:mod:`.running` drives each job of this process (queue, heartbeat, record);
:mod:`.protocol` speaks the 2025-11-25 ``tasks/*`` methods over it and
:mod:`.extension` the 2026-07-28 tasks extension.
"""

from mcp_imagegen._tasks.manager import TaskError, TaskManager, TaskNotFoundError
from mcp_imagegen._tasks.memory import MemoryTaskStore

__all__ = ["MemoryTaskStore", "TaskError", "TaskManager", "TaskNotFoundError"]
