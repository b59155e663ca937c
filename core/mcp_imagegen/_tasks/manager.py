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

import contextvars
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc
import structlog

from mcp_imagegen import new_task_id, validate_task_id
from mcp_imagegen._tasks.memory import MemoryTaskStore
from mcp_imagegen.errors import BusyError, ConfigurationError, MCPImageError
from mcp_imagegen.interfaces import ImageStorage, TaskStore
from mcp_imagegen.models import TaskRecord

if TYPE_CHECKING:
    from mcp_imagegen._config import TaskSettings

log = structlog.get_logger("mcp_imagegen._tasks")

#: The work of a task: runs the tool call, returns its ``CallToolResult`` as JSON.
Work = Callable[[], Awaitable[dict[str, Any]]]
#: Told of every change of a task this process runs (status or its message).
Listener = Callable[[TaskRecord], Awaitable[None]]

#: A working task whose record was not refreshed for this many heartbeat
#: intervals is taken for dead: its runner stopped without finishing it.
STALE_HEARTBEATS = 3

_current: contextvars.ContextVar[_Job | None] = contextvars.ContextVar(
    "mcp_imagegen_task", default=None
)


class TaskError(MCPImageError):
    """A task request that cannot be served (bad id, wrong state, bad ttl)."""


class TaskNotFoundError(TaskError):
    """No task of this caller has that id (or it expired)."""


def current_task_id() -> str | None:
    """The id of the task whose work is running in this context, if any."""
    job = _current.get()
    return None if job is None else job.record.task_id


def report_status(message: str) -> None:
    """Set the running task's status message (e.g. "image 2/4: step 18/30").

    A no-op outside a task's work, so tools call it unconditionally.
    """
    job = _current.get()
    if job is not None and job.record.status_message != message:
        job.record.status_message = message
        job.record.updated_at = _now()
        job.changed.set()
        job.progressed.set()


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Job:
    """A task this process runs."""

    record: TaskRecord
    work: Work
    listener: Listener | None
    done: anyio.Event = field(default_factory=anyio.Event)
    #: Set when the record changed since the last notification.
    changed: anyio.Event = field(default_factory=anyio.Event)
    #: Set when the status message changed since the record was last shared.
    progressed: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    #: Whether the record lives in the store. A synchronous call's work is kept
    #: in this process only until the caller stops waiting for it (``detach``):
    #: a fast call never writes a task record.
    detached: bool = True
    #: Serialises the record's writes, so a later state is never overwritten
    #: by an earlier one (a detach racing the end of the work).
    saving: anyio.Lock = field(default_factory=anyio.Lock)
    #: The job's own task group while it runs: a job that detaches late starts
    #: its heartbeat and progress sharing there.
    group: anyio.abc.TaskGroup | None = None


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
        self.store: TaskStore = MemoryTaskStore()
        #: This process, as named in the records it runs.
        self.runner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._jobs: dict[str, _Job] = {}
        self._queue: list[str] = []
        self._slots = anyio.Semaphore(settings.max_running)
        self._group: anyio.abc.TaskGroup | None = None

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
            BusyError: when ``server.tasks.max_queued`` tasks already wait.
            TaskError: for a ttl out of range.
        """
        if self._group is None:
            raise TaskError("the server is not running tasks (it is stopping)")
        ttl = self.ttl_ms(ttl_ms)
        if self._slots.value == 0 and len(self._queue) >= self.settings.max_queued:
            raise BusyError(
                f"too many tasks: {self.settings.max_running} running and "
                f"{len(self._queue)} queued (server.tasks.max_queued); retry later"
            )
        now = _now()
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
        job = _Job(record=record, work=work, listener=listener, detached=detached)
        self._jobs[record.task_id] = job
        self._group.start_soon(self._run, job)
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
            silent = _now() - record.heartbeat_at
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
            # Flagged before the first await: the work's end, whenever it comes,
            # now stores its record (after this one, under the job's lock).
            job.detached = True
            self._start_sharing(job)
            await self._save(job)
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
        return await self.store.delete_expired(_now())

    # -- running -------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        record = job.record
        token = _current.set(job)
        try:
            with job.scope:
                async with anyio.create_task_group() as group:
                    job.group = group
                    # Helpers only where they have work: a synchronous call
                    # (not detached, no listener) runs without any, which keeps
                    # three task starts off every fast call.
                    if job.detached:
                        self._start_sharing(job)
                    if job.listener is not None:
                        group.start_soon(self._notify, job)
                    self._queue.append(record.task_id)
                    try:
                        self._update_queue_messages()
                        await self._slots.acquire()
                    finally:
                        self._queue.remove(record.task_id)
                    try:
                        self._update_queue_messages()
                        report_status("running")
                        result = await job.work()
                    finally:
                        self._slots.release()
                    self._finish(job, result)
                    group.cancel_scope.cancel()
                    job.group = None
            if job.scope.cancelled_caught:
                record.status, record.status_message = "cancelled", "cancelled"
        except Exception:
            log.exception("task_crashed", task_id=record.task_id)
            record.status = "failed"
            record.status_message = (
                f"{record.tool} failed because of an internal error; the server log "
                "has the details. The server is still running."
            )
            record.result = _error_result(record.status_message)
        finally:
            _current.reset(token)
            if not record.terminal:
                # The server is stopping (our group was cancelled).
                record.status = "failed"
                record.status_message = "the server stopped before the task finished"
                record.result = _error_result(record.status_message)
            record.updated_at = record.heartbeat_at = _now()
            with anyio.CancelScope(shield=True):
                if job.detached:
                    await self._save(job)
                    self._jobs.pop(record.task_id, None)
                # An undetached job is collected (and forgotten) by its waiter.
                job.done.set()
                if job.listener is not None:
                    await _tell(job.listener, record)
            (log.info if job.detached else log.debug)(
                "task_finished", task_id=record.task_id, status=record.status
            )

    def _finish(self, job: _Job, result: dict[str, Any]) -> None:
        record = job.record
        record.result = result
        if result.get("isError"):
            record.status = "failed"
            record.status_message = _text_of(result) or "the tool call failed"
        else:
            record.status, record.status_message = "completed", "completed"

    def _update_queue_messages(self) -> None:
        for ahead, task_id in enumerate(self._queue):
            job = self._jobs.get(task_id)
            if job is not None:
                message = f"queued: {ahead} ahead" if ahead else "queued: next"
                if job.record.status_message != message:
                    job.record.status_message = message
                    job.changed.set()
                    job.progressed.set()

    def _start_sharing(self, job: _Job) -> None:
        """Start the heartbeat and progress sharing of a job stored in the store."""
        if job.group is None:
            return  # the work is over: its end stores the record
        try:
            job.group.start_soon(self._heartbeat, job)
            job.group.start_soon(self._share_progress, job)
        except RuntimeError:
            pass  # the group is closing (the work just ended or was cancelled)

    async def _heartbeat(self, job: _Job) -> None:
        interval = self.settings.heartbeat_interval.total_seconds()
        while True:
            await anyio.sleep(interval)
            try:
                if await self.store.cancel_requested(job.record.task_id):
                    log.info("task_cancel_requested", task_id=job.record.task_id)
                    job.scope.cancel()
                    return
                job.record.heartbeat_at = _now()
                await self._save(job)
            except Exception as exc:
                # A store hiccup must not kill the task; readers elsewhere see a
                # stale heartbeat only if it lasts several intervals.
                log.warning(
                    "task_heartbeat_failed", error=f"{type(exc).__name__}: {exc}"
                )

    async def _share_progress(self, job: _Job) -> None:
        # Other replicas read a detached task's progress from the store; the
        # heartbeat alone (every heartbeat_interval) is too slow to follow it.
        # At most one write per poll_interval: a client polls no faster, and a
        # backend reporting every step must not cost a store write per step.
        interval = self.settings.poll_interval.total_seconds()
        while True:
            await job.progressed.wait()
            job.progressed = anyio.Event()
            if job.detached:
                await self._save(job)
                await anyio.sleep(interval)

    async def _notify(self, job: _Job) -> None:
        if job.listener is None:
            return
        while True:
            await job.changed.wait()
            job.changed = anyio.Event()
            await _tell(job.listener, job.record.model_copy())

    async def _save(self, job: _Job) -> None:
        record = job.record
        try:
            async with job.saving:
                # Copied under the lock: whoever writes last writes the latest.
                await self.store.put(record.model_copy())
        except Exception as exc:
            log.warning(
                "task_save_failed",
                task_id=record.task_id,
                error=f"{type(exc).__name__}: {exc}",
            )


async def _tell(listener: Listener, record: TaskRecord) -> None:
    # The client may be gone: a task outlives its connection.
    try:
        await listener(record)
    except Exception as exc:
        log.debug("task_notify_failed", error=f"{type(exc).__name__}: {exc}")


def _text_of(result: dict[str, Any]) -> str | None:
    for item in result.get("content") or []:
        if isinstance(item, dict) and item.get("type") == "text":
            return str(item.get("text"))
    return None


def _error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


__all__ = [
    "STALE_HEARTBEATS",
    "TaskError",
    "TaskManager",
    "TaskNotFoundError",
    "current_task_id",
    "report_status",
]
