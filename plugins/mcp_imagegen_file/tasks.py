"""MCP task records as files beside the images, shared by every replica.

Layout: ``<directory>/tasks/<task id>.json`` holds a task's
:class:`~mcp_imagegen.TaskRecord`, ``<task id>.cancel`` (empty) marks that its
cancellation was asked for. Each write goes to a hidden temporary name, is
fsynced and renamed over the record, so a reader (on any replica sharing the
directory) sees the old record or the new one, never part of one. Task ids sort
by creation time, so a listing is the directory's names sorted backwards.

The image listing, retention and orphan sweep only walk day folders
(``YYYY-MM-DD``), so they never see ``tasks/``; :meth:`FileTaskStore.delete_expired`
tidies this folder (expired records, cancel marks without a record, leftovers of
interrupted writes).
"""

from __future__ import annotations

import builtins
import contextlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import structlog

from mcp_imagegen import (
    StorageError,
    TaskPage,
    TaskRecord,
    TaskStore,
    ValidationError,
    decode_cursor,
    encode_cursor,
    validate_task_id,
)
from mcp_imagegen_file.files import write_atomic
from mcp_imagegen_file.layout import TEMP_PREFIX

log = structlog.get_logger("mcp_imagegen_file.tasks")

TASKS_FOLDER = "tasks"
RECORD_SUFFIX = ".json"
CANCEL_SUFFIX = ".cancel"
#: Marks this store's cursors, so another listing's cursor is refused.
_CURSOR_TAG = "file-task:"
#: Temporary files of interrupted writes older than this are removed by
#: ``delete_expired``; a write takes milliseconds, so one in progress is spared.
TEMP_GRACE = timedelta(hours=1)


class FileTaskStore(TaskStore):
    """Keeps task records as files in one folder (``<storage directory>/tasks``).

    Every method runs its file work in one worker thread call, not cancellable
    half way: a cancelled caller never leaves a write half done.
    """

    def __init__(self, directory: Path) -> None:
        """Keep records in ``directory`` (created at the first write)."""
        self.directory = directory

    def _path(self, task_id: str, suffix: str) -> Path:
        # Validated here, before any path is built from the id.
        return self.directory / f"{validate_task_id(task_id)}{suffix}"

    # -- one task ----------------------------------------------------------------

    async def put(self, record: TaskRecord) -> None:
        """Write the record atomically (temporary file, fsync, rename)."""
        path = self._path(record.task_id, RECORD_SUFFIX)
        data = record.model_dump_json().encode()
        await anyio.to_thread.run_sync(self._write, path, data)

    def _write(self, path: Path, data: bytes) -> None:
        try:
            try:
                write_atomic((path, data))
            except FileNotFoundError:  # the first write: create the folder
                self.directory.mkdir(parents=True, exist_ok=True)
                write_atomic((path, data))
        except OSError as exc:
            raise StorageError(
                f"Could not write task record {path.name} in {self.directory}: "
                f"{exc.strerror or exc}."
            ) from None

    async def get(self, task_id: str) -> TaskRecord | None:
        """Return the record, or ``None`` if there is none or it expired.

        Raises:
            StorageError: if the file cannot be read or is not a task record.
        """
        path = self._path(task_id, RECORD_SUFFIX)
        return await anyio.to_thread.run_sync(self._read, path, datetime.now(UTC))

    def _read(self, path: Path, now: datetime) -> TaskRecord | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(
                f"Could not read task record {path.name} in {self.directory}: "
                f"{exc.strerror or exc}."
            ) from None
        try:
            record = TaskRecord.model_validate_json(raw)
        except ValueError:
            raise StorageError(
                f"The task record {path.name} in {self.directory} is corrupt."
            ) from None
        return None if record.expired(now) else record

    async def delete(self, task_id: str) -> None:
        """Remove the record, then the cancel mark; absent files are no error."""
        paths = [self._path(task_id, RECORD_SUFFIX), self._path(task_id, CANCEL_SUFFIX)]
        await anyio.to_thread.run_sync(self._unlink, paths)

    def _unlink(self, paths: builtins.list[Path]) -> None:
        for path in paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise StorageError(
                    f"Could not delete {path.name} in {self.directory}: "
                    f"{exc.strerror or exc}."
                ) from None

    async def request_cancel(self, task_id: str) -> None:
        """Write the (empty) cancel mark ``<task id>.cancel``."""
        path = self._path(task_id, CANCEL_SUFFIX)
        await anyio.to_thread.run_sync(self._write, path, b"")

    async def cancel_requested(self, task_id: str) -> bool:
        """True if the cancel mark exists."""
        path = self._path(task_id, CANCEL_SUFFIX)
        return await anyio.to_thread.run_sync(path.exists)

    # -- many tasks --------------------------------------------------------------

    def _ids(self, suffix: str = RECORD_SUFFIX) -> builtins.list[str]:
        """Ids of the files ending in ``suffix``, oldest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []  # nothing written yet
        except OSError as exc:
            raise StorageError(
                f"Could not list {self.directory}: {exc.strerror or exc}."
            ) from None
        ids = []
        for name in names:
            if name.endswith(suffix) and not name.startswith("."):
                with contextlib.suppress(ValidationError):
                    ids.append(validate_task_id(name[: -len(suffix)]))
        ids.sort()
        return ids

    async def list(
        self, owner: str | None, limit: int = 50, cursor: str | None = None
    ) -> TaskPage:
        """Return ``owner``'s live tasks, newest first, after ``cursor``.

        Reads the folder's names, then records newest first until the page (and
        one more, to know whether another page exists) is found.

        Raises:
            ValidationError: if ``limit`` is below 1 or ``cursor`` is not one this
                store returned.
        """
        if limit < 1:
            raise ValidationError(f"limit {limit} is out of range: use 1 or more.")
        before = (
            decode_cursor(cursor, tag=_CURSOR_TAG, validate=validate_task_id)
            if cursor is not None
            else None
        )
        return await anyio.to_thread.run_sync(
            self._list, owner, limit, before, datetime.now(UTC)
        )

    def _list(
        self, owner: str | None, limit: int, before: str | None, now: datetime
    ) -> TaskPage:
        items: builtins.list[TaskRecord] = []
        for task_id in reversed(self._ids()):
            if before is not None and task_id >= before:
                continue
            record = self._read(self._path(task_id, RECORD_SUFFIX), now)
            if record is None or record.owner != owner:
                continue  # deleted meanwhile, expired, or someone else's
            if len(items) == limit:
                return TaskPage(
                    items=items,
                    next_cursor=encode_cursor(items[-1].task_id, tag=_CURSOR_TAG),
                )
            items.append(record)
        return TaskPage(items=items)

    async def delete_expired(self, now: datetime) -> int:
        """Delete expired tasks, cancel marks without a record, and leftovers.

        Corrupt records are kept (and logged): nothing is deleted that cannot
        be shown to have expired.

        Returns:
            How many tasks (records) were deleted.
        """
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
        deleted: int = await anyio.to_thread.run_sync(self._delete_expired, now)
        if deleted:
            log.info("file_task_records_expired", count=deleted)
        return deleted

    def _delete_expired(self, now: datetime) -> int:
        deleted = 0
        for task_id in self._ids(RECORD_SUFFIX):
            path = self._path(task_id, RECORD_SUFFIX)
            try:
                raw = path.read_bytes()
                record = TaskRecord.model_validate_json(raw)
            except FileNotFoundError:
                continue  # deleted meanwhile
            except (OSError, ValueError) as exc:
                log.warning(
                    "file_task_record_unreadable", file=path.name, error=str(exc)
                )
                continue
            if record.expired(now):
                self._unlink([path, self._path(task_id, CANCEL_SUFFIX)])
                deleted += 1
        self._remove_leftovers(now - TEMP_GRACE)
        return deleted

    def _remove_leftovers(self, older_than: datetime) -> None:
        """Remove old temporary files, and old cancel marks whose task is gone.

        Only files last changed before ``older_than``: a write in progress, or a
        cancel mark racing its task's deletion, is left to a later sweep.
        """
        try:
            entries = builtins.list(os.scandir(self.directory))
        except OSError:
            return  # no folder yet, or unreadable: the next sweep tries again
        cutoff = older_than.timestamp()
        for entry in entries:
            name = entry.name
            if name.endswith(CANCEL_SUFFIX) and not name.startswith("."):
                record = name[: -len(CANCEL_SUFFIX)] + RECORD_SUFFIX
                if (self.directory / record).exists():
                    continue
            elif not name.startswith(TEMP_PREFIX):
                continue
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
