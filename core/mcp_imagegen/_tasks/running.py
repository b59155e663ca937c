"""The per-job machinery of the task runner: one task's run, from queue to record.

:class:`~mcp_imagegen._tasks.manager.TaskManager` is the public face (start, get,
wait, cancel); a :class:`JobRunner` holds what the jobs of this process share
(the store, the running slots, the queue) and drives each job: it waits for a
slot, runs the work, keeps the record's heartbeat and progress in the store
once the job is detached, tells the job's listener, and records the end.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import structlog

from mcp_imagegen._tasks.memory import MemoryTaskStore
from mcp_imagegen.interfaces import TaskStore
from mcp_imagegen.models import TaskRecord

if TYPE_CHECKING:
    from mcp_imagegen._config import TaskSettings

# The manager's logger name: the events are the same ones as before the split.
log = structlog.get_logger("mcp_imagegen._tasks")

#: The work of a task: runs the tool call, returns its ``CallToolResult`` as JSON.
Work = Callable[[], Awaitable[dict[str, Any]]]
#: Told of every change of a task this process runs (status or its message).
Listener = Callable[[TaskRecord], Awaitable[None]]

_current: contextvars.ContextVar[Job | None] = contextvars.ContextVar(
    "mcp_imagegen_task", default=None
)


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
        job.record.updated_at = utc_now()
        job.changed.set()
        job.progressed.set()


def utc_now() -> datetime:
    """Now, in UTC (task records keep aware times)."""
    return datetime.now(UTC)


@dataclass
class Job:
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


class JobRunner:
    """Runs this process's jobs and keeps their records in the store.

    The :class:`~mcp_imagegen._tasks.manager.TaskManager` owns one and reads its
    state (``jobs``, ``queue``, ``slots``) to answer requests and refuse new
    tasks when the queue is full.

    Args:
        settings: The ``[server.tasks]`` section.
    """

    def __init__(self, settings: TaskSettings) -> None:
        self.settings = settings
        #: Replaced by the manager on entering when records are shared.
        self.store: TaskStore = MemoryTaskStore()
        #: The jobs this process runs (and undetached ones not yet collected).
        self.jobs: dict[str, Job] = {}
        #: Ids of the jobs waiting for a slot, oldest first.
        self.queue: list[str] = []
        self.slots = anyio.Semaphore(settings.max_running)

    async def run(self, job: Job) -> None:
        """Run ``job`` to its end and record how it ended (in its own task)."""
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
                        self.start_sharing(job)
                    if job.listener is not None:
                        group.start_soon(self._notify, job)
                    self.queue.append(record.task_id)
                    try:
                        self._update_queue_messages()
                        await self.slots.acquire()
                    finally:
                        self.queue.remove(record.task_id)
                    try:
                        self._update_queue_messages()
                        report_status("running")
                        result = await job.work()
                    finally:
                        self.slots.release()
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
            record.updated_at = record.heartbeat_at = utc_now()
            with anyio.CancelScope(shield=True):
                if job.detached:
                    await self.save(job)
                    self.jobs.pop(record.task_id, None)
                # An undetached job is collected (and forgotten) by its waiter.
                job.done.set()
                if job.listener is not None:
                    await _tell(job.listener, record)
            (log.info if job.detached else log.debug)(
                "task_finished", task_id=record.task_id, status=record.status
            )

    def _finish(self, job: Job, result: dict[str, Any]) -> None:
        record = job.record
        record.result = result
        if result.get("isError"):
            record.status = "failed"
            record.status_message = _text_of(result) or "the tool call failed"
        else:
            record.status, record.status_message = "completed", "completed"

    def _update_queue_messages(self) -> None:
        for ahead, task_id in enumerate(self.queue):
            job = self.jobs.get(task_id)
            # A synchronous call's job is seen by nobody until it detaches
            # (which refreshes its message): skipping it keeps 64 waiting
            # calls from costing 64 updates each time one starts or ends.
            if job is not None and (job.detached or job.listener is not None):
                message = f"queued: {ahead} ahead" if ahead else "queued: next"
                if job.record.status_message != message:
                    job.record.status_message = message
                    job.changed.set()
                    job.progressed.set()

    async def detach(self, job: Job) -> None:
        """Keep ``job``'s record in the store from now on (its caller stopped waiting).

        Flagged before the first await: the work's end, whenever it comes, then
        stores its record (after this one, under the job's lock).
        """
        job.detached = True
        if job.record.task_id in self.queue:
            self._update_queue_messages()
        self.start_sharing(job)
        await self.save(job)

    def start_sharing(self, job: Job) -> None:
        """Start the heartbeat and progress sharing of a job stored in the store."""
        if job.group is None:
            return  # the work is over: its end stores the record
        try:
            job.group.start_soon(self._heartbeat, job)
            job.group.start_soon(self._share_progress, job)
        except RuntimeError:
            pass  # the group is closing (the work just ended or was cancelled)

    async def _heartbeat(self, job: Job) -> None:
        interval = self.settings.heartbeat_interval.total_seconds()
        while True:
            await anyio.sleep(interval)
            try:
                if await self.store.cancel_requested(job.record.task_id):
                    log.info("task_cancel_requested", task_id=job.record.task_id)
                    job.scope.cancel()
                    return
                job.record.heartbeat_at = utc_now()
                await self.save(job)
            except Exception as exc:
                # A store hiccup must not kill the task; readers elsewhere see a
                # stale heartbeat only if it lasts several intervals.
                log.warning(
                    "task_heartbeat_failed", error=f"{type(exc).__name__}: {exc}"
                )

    async def _share_progress(self, job: Job) -> None:
        # Other replicas read a detached task's progress from the store; the
        # heartbeat alone (every heartbeat_interval) is too slow to follow it.
        # At most one write per poll_interval: a client polls no faster, and a
        # backend reporting every step must not cost a store write per step.
        interval = self.settings.poll_interval.total_seconds()
        while True:
            await job.progressed.wait()
            job.progressed = anyio.Event()
            if job.detached:
                await self.save(job)
                await anyio.sleep(interval)

    async def _notify(self, job: Job) -> None:
        if job.listener is None:
            return
        while True:
            await job.changed.wait()
            job.changed = anyio.Event()
            await _tell(job.listener, job.record.model_copy())

    async def save(self, job: Job) -> None:
        """Write the job's record; a failing store is logged, not raised."""
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
