"""Task records in this process's memory (stdio, or a storage without a store)."""

from __future__ import annotations

from datetime import UTC, datetime

from mcp_imagegen import validate_task_id
from mcp_imagegen.errors import ValidationError
from mcp_imagegen.interfaces import TaskStore
from mcp_imagegen.models import TaskPage, TaskRecord


class MemoryTaskStore(TaskStore):
    """A :class:`TaskStore` in a dict: fast, and gone with the process.

    Records are copied in and out so a caller mutating one never changes what
    is stored.
    """

    def __init__(self) -> None:
        self._records: dict[str, TaskRecord] = {}
        self._cancels: set[str] = set()

    async def put(self, record: TaskRecord) -> None:
        """Create or replace the record of ``record.task_id``."""
        self._records[validate_task_id(record.task_id)] = record.model_copy(deep=True)

    async def get(self, task_id: str) -> TaskRecord | None:
        """The task's record, ``None`` if absent or past its ttl."""
        record = self._records.get(validate_task_id(task_id))
        if record is None or record.expired(datetime.now(UTC)):
            return None
        return record.model_copy(deep=True)

    async def list(
        self, owner: str | None, limit: int = 50, cursor: str | None = None
    ) -> TaskPage:
        """``owner``'s live tasks, newest first (ids sort by creation time)."""
        if cursor is not None:
            try:
                validate_task_id(cursor)
            except ValidationError:
                raise ValidationError(
                    "cursor: not a cursor this server returned; omit it to start "
                    "from the newest task"
                ) from None
        ids = sorted(
            (i for i, r in self._records.items() if r.owner == owner),
            reverse=True,
        )
        if cursor is not None:
            ids = [i for i in ids if i < cursor]
        items: list[TaskRecord] = []
        for task_id in ids:
            record = await self.get(task_id)
            if record is not None:
                items.append(record)
            if len(items) == limit:
                break
        more = bool(items) and len(items) == limit and items[-1].task_id != ids[-1]
        return TaskPage(items=items, next_cursor=items[-1].task_id if more else None)

    async def delete(self, task_id: str) -> None:
        """Forget the task and its cancel request."""
        self._records.pop(task_id, None)
        self._cancels.discard(task_id)

    async def request_cancel(self, task_id: str) -> None:
        """Remember that the task's cancellation was asked for."""
        self._cancels.add(validate_task_id(task_id))

    async def cancel_requested(self, task_id: str) -> bool:
        """Whether :meth:`request_cancel` was called for the task."""
        return task_id in self._cancels

    async def delete_expired(self, now: datetime) -> int:
        """Delete every task past its ttl; return how many."""
        expired = [i for i, r in self._records.items() if r.expired(now)]
        for task_id in expired:
            await self.delete(task_id)
        return len(expired)
