"""The task runner: tool calls that go on in the background, and their records.

A task's work runs in the manager's task group, which the server's lifespan owns,
so it outlives the request that started it (and the client's connection). Only
the process that runs a task (its *runner*) writes the task's record while it is
``working``: every ``put`` of a working record is its heartbeat. Any process can
read a record, ask for its cancellation (:meth:`TaskStore.request_cancel`, which
the runner checks at each heartbeat) and tell a task whose runner died by its
stale heartbeat.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio
import anyio.abc
import structlog

from mcp_imagegen import new_task_id, validate_task_id
from mcp_imagegen._tasks.running import (
    Job,
    JobRunner,
    Listener,
    Work,
    current_task_id,
    report_status,
    utc_now,
)
from mcp_imagegen.errors import BusyError, ConfigurationError, MCPImageError
from mcp_imagegen.interfaces import ImageStorage, TaskStore
from mcp_imagegen.models import TaskRecord

if TYPE_CHECKING:
    from mcp_imagegen._config import TaskSettings

log = structlog.get_logger("mcp_imagegen._tasks")

#: A working task whose record was not refreshed for this many heartbeat
#: intervals is taken for dead: its runner stopped without finishing it.
STALE_HEARTBEATS = 3


class TaskError(MCPImageError):
    """A task request that cannot be served (bad id, wrong state, bad ttl)."""


class TaskNotFoundError(TaskError):
    """No task of this caller has that id (or it expired)."""


def refuse_past_share(jobs: Iterable[Job], owner: str | None, limit: int) -> None:
    """Refuse one more task of ``owner`` when it has ``limit`` here already.

    ``server.tasks.max_per_client``: 0 is no limit, and callers without
    authentication (``owner`` None) are not told apart.

    Raises:
        BusyError: when ``owner``'s unfinished ``jobs`` number ``limit``.
    """
    if not limit or owner is None:
        return
    mine = sum(
        1 for job in jobs if job.record.owner == owner and not job.record.terminal
    )
    if mine >= limit:
        raise BusyError(
            f"too many tasks for this client: {mine} running or queued "
            f"(server.tasks.max_per_client = {limit}); retry when one has finished"
        )


class TaskManager:
    """Starts, tracks, cancels and answers for tasks.

    Use as an async context manager inside the service's lifespan: entering picks
    the store (``server.tasks.store``) and starts the task group; leaving cancels
    the tasks still running and records them ``failed``.

    Args:
        settings: The ``[server.tasks]`` section.
        storage: The image storage, whose ``task_store()`` is used over HTTP.
        http: Whether the server is served over HTTP (``store = "auto"`` then
            uses the storage's task store, shared by every replica).
    """

    def __init__(
        self, settings: TaskSettings, storage: ImageStorage, *, http: bool = False
    ) -> None:
        self.settings = settings
        self._storage = storage
        self._http = http
        #: This process, as named in the records it runs.
        self.runner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._running = JobRunner(settings)
        # The runner's own dict: a job it forgets is gone from here too.
        self._jobs = self._running.jobs
        self._group: anyio.abc.TaskGroup | None = None

    @property
    def store(self) -> TaskStore:
        """Where task records are kept (the runner's, so both see one store)."""
        return self._running.store

    @store.setter
    def store(self, store: TaskStore) -> None:
        self._running.store = store

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Self:
        choice = self.settings.store
        shared = self._storage.task_store() if choice != "memory" else None
        if choice == "storage" and shared is None:
            raise ConfigurationError(
                f'server.tasks.store = "storage", but the {self._storage.name} '
                'storage keeps no task records; use "auto" or "memory"'
            )
        if shared is not None and (choice == "storage" or self._http):
            self.store = shared
        group = anyio.create_task_group()
        await group.__aenter__()
        self._group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        if group is not None:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            await self.store.aclose()

    # -- requests ----------------------------------------------------------------

    @property
    def poll_interval_ms(self) -> int:
        """The polling interval suggested to clients, in milliseconds."""
        return int(self.settings.poll_interval.total_seconds() * 1000)

    def ttl_ms(self, requested: int | None) -> int:
        """The ttl a task gets: the client's, clamped to ``server.tasks.ttl``.

        Raises:
            TaskError: if ``requested`` is below one second.
        """
        most = int(self.settings.ttl.total_seconds() * 1000)
        if requested is None:
            return most
        if requested < 1000:
            raise TaskError(
                f"task.ttl: {requested} ms is too short; give at least 1000 "
                f"(milliseconds), at most {most} is kept, or omit it"
            )
        return min(requested, most)

    async def start(
        self,
        tool: str,
        work: Work,
        *,
        owner: str | None,
        ttl_ms: int | None = None,
        listener: Listener | None = None,
        detached: bool = True,
    ) -> TaskRecord:
        """Record a new task and start ``work`` in the background.

        With ``detached=False`` (a synchronous tool call) nothing is written to
        the store: the caller collects the result with :meth:`wait_local`, and
        the record is stored only if it stops waiting before the work is done.

        Raises:
            BusyError: when ``server.tasks.max_queued`` tasks already wait, or
                ``owner`` has ``server.tasks.max_per_client`` tasks already.
            TaskError: for a ttl out of range.
        """
        if self._group is None:
            raise TaskError("the server is not running tasks (it is stopping)")
        ttl = self.ttl_ms(ttl_ms)
        queued = len(self._running.queue)
        if self._running.slots.value == 0 and queued >= self.settings.max_queued:
            raise BusyError(
                f"too many tasks: {self.settings.max_running} running and "
                f"{queued} queued (server.tasks.max_queued); retry later"
            )
        refuse_past_share(self._jobs.values(), owner, self.settings.max_per_client)
        now = utc_now()
        record = TaskRecord(
            task_id=new_task_id(now),
            owner=owner,
            tool=tool,
            status="working",
            status_message="starting",
            created_at=now,
            updated_at=now,
            ttl_ms=ttl,
            poll_interval_ms=self.poll_interval_ms,
            runner=self.runner,
            heartbeat_at=now,
        )
        if detached:
            await self.store.put(record)
        job = Job(record=record, work=work, listener=listener, detached=detached)
        self._jobs[record.task_id] = job
        self._group.start_soon(self._running.run, job)
        # A synchronous call's work is logged as a task only once detached.
        (log.info if detached else log.debug)(
            "task_created", task_id=record.task_id, tool=tool
        )
        return record.model_copy()

    async def get(self, task_id: object, owner: str | None) -> TaskRecord:
        """The caller's task, a dead runner's ``working`` task reported ``failed``.

        Raises:
            TaskNotFoundError: for an unknown, expired or another caller's task.
            ValidationError: for a malformed id.
        """
        task_id = validate_task_id(task_id)
        job = self._jobs.get(task_id)
        record = job.record.model_copy() if job else await self.store.get(task_id)
        if record is None or record.owner != owner:
            raise TaskNotFoundError(
                f"taskId: no task {task_id} (unknown, expired, or not yours)"
            )
        if job is None and record.status == "working":
            silent = utc_now() - record.heartbeat_at
            if silent > self.settings.heartbeat_interval * STALE_HEARTBEATS:
                record.status = "failed"
                record.status_message = (
                    f"the server running this task ({record.runner}) stopped: no "
                    f"heartbeat for {int(silent.total_seconds())} s"
                )
        return record

    async def wait(self, task_id: object, owner: str | None) -> TaskRecord:
        """The caller's task once it is finished (completed, failed or cancelled).

        A task this process runs is awaited on its event; another process's is
        polled in the store every ``server.tasks.poll_interval``.
        """
        record = await self.get(task_id, owner)
        while not record.terminal:
            job = self._jobs.get(record.task_id)
            if job is not None:
                await job.done.wait()
            else:
                await anyio.sleep(self.settings.poll_interval.total_seconds())
            record = await self.get(record.task_id, owner)
        return record

    async def wait_local(self, task_id: str, seconds: float) -> TaskRecord | None:
        """This process's task once finished, or ``None`` after ``seconds``.

        A task still running after ``seconds`` is detached: its record is
        stored from then on, so ``get_generation`` finds it on any replica.
        Cancelling the caller while it waits cancels the task too: the caller
        (a synchronous tool call) still owned it.
        """
        job = self._jobs.get(task_id)
        if job is None:
            # Already finished (and forgotten by this process): its record says.
            return await self.store.get(task_id)
        try:
            with anyio.move_on_after(seconds):
                await job.done.wait()
        except anyio.get_cancelled_exc_class():
            job.scope.cancel()
            if not job.detached:
                self._jobs.pop(task_id, None)
            raise
        if job.done.is_set():
            if not job.detached:
                self._jobs.pop(task_id, None)
            return job.record.model_copy()
        if not job.detached:
            await self._running.detach(job)
        return None

    async def cancel(self, task_id: object, owner: str | None) -> TaskRecord:
        """Cancel the caller's task: its work stops, nothing of it is stored.

        Raises:
            TaskNotFoundError: for an unknown or another caller's task.
            TaskError: when the task already finished.
        """
        record = await self.get(task_id, owner)
        if record.terminal:
            raise TaskError(
                f"taskId: task {record.task_id} is already {record.status}; "
                "only a working task can be cancelled"
            )
        job = self._jobs.get(record.task_id)
        if job is not None:
            job.scope.cancel()
            await job.done.wait()
            return job.record.model_copy()
        # Another process runs it: it sees the request at its next heartbeat.
        await self.store.request_cancel(record.task_id)
        record.status = "cancelled"
        record.status_message = "cancellation requested"
        return record

    async def list(
        self, owner: str | None, cursor: str | None = None
    ) -> tuple[list[TaskRecord], str | None]:
        """The caller's tasks, newest first, one page, and the next cursor."""
        page = await self.store.list(owner, 50, cursor)
        items = []
        for record in page.items:
            try:
                items.append(await self.get(record.task_id, owner))
            except TaskNotFoundError:
                continue  # expired between the listing and now
        return items, page.next_cursor

    async def delete_expired(self) -> int:
        """Delete records past their ttl (called by the retention loop)."""
        return await self.store.delete_expired(utc_now())


__all__ = [
    "STALE_HEARTBEATS",
    "Listener",
    "TaskError",
    "TaskManager",
    "TaskNotFoundError",
    "Work",
    "current_task_id",
    "report_status",
]
