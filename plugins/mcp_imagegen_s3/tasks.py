"""MCP task records as objects under the storage's prefix, shared by every replica.

Layout: ``<prefix>tasks/<task id>.json`` holds a task's
:class:`~mcp_imagegen.TaskRecord` (one PUT, so a reader sees the old or the new
record, never part of one), ``<prefix>tasks/<task id>.cancel`` (empty) marks that
its cancellation was asked for. Each record object carries its expiry time and a
digest of its owner as user metadata, so listings and the expiry sweep decide
with a HEAD request instead of reading records whose results may weigh
megabytes. Task ids sort by creation time: S3's ascending key order is creation
order.

The image listing and the orphan sweep only take keys of the form ``<id>.<ext>``
right under the prefix, so they never see ``tasks/``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pydantic

from mcp_imagegen import (
    StorageError,
    TaskPage,
    TaskRecord,
    TaskStore,
    ValidationError,
    decode_cursor,
    encode_cursor,
    gather,
    validate_task_id,
)
from mcp_imagegen_s3.base import log
from mcp_imagegen_s3.errors import (
    NOT_FOUND_CODES,
    error_code,
    is_s3_answer,
    is_transport_error,
    request_error,
)
from mcp_imagegen_s3.objects import S3Objects

TASKS_FOLDER = "tasks/"
RECORD_SUFFIX = ".json"
CANCEL_SUFFIX = ".cancel"
#: Marks this store's cursors, so another listing's cursor is refused.
_CURSOR_TAG = "s3-task:"
#: HEAD or GET requests in flight for one listing or sweep.
_CONCURRENCY = 16
_EXPIRES = "expires-at-ms"
_OWNER = "owner"
_NO_OWNER = "-"


def _owner_tag(owner: str | None) -> str:
    """What the metadata says of ``owner``: a digest (metadata must be ASCII, and
    the principal is no business of whoever lists the bucket)."""
    if owner is None:
        return _NO_OWNER
    return hashlib.sha256(owner.encode()).hexdigest()


def _ms(moment: datetime) -> int:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return int(moment.timestamp() * 1000)


class S3TaskStore(TaskStore):
    """Keeps task records in the S3 storage's bucket, under ``<prefix>tasks/``.

    It uses the storage's client, so it works between the storage's ``start``
    and ``aclose``; closing the store leaves the storage open.
    """

    def __init__(self, storage: S3Objects) -> None:
        """Keep records beside ``storage``'s images, through its client."""
        self._storage = storage
        self._prefix = storage.settings.prefix + TASKS_FOLDER

    def _key(self, task_id: str, suffix: str) -> str:
        # Validated here, before any key is built from the id.
        return f"{self._prefix}{validate_task_id(task_id)}{suffix}"

    async def _call(
        self,
        action: str,
        key: str,
        call: Callable[[], Awaitable[Any]],
        *,
        missing: Any = StorageError,
    ) -> Any:
        """Run one S3 call; failures become :class:`StorageError` naming the key.

        ``missing`` is returned when the object does not exist (unless it is
        left at :class:`StorageError`, which then maps it like other errors).
        """
        try:
            return await call()
        except Exception as exc:
            code = error_code(exc)
            if missing is not StorageError and code in NOT_FOUND_CODES:
                return missing
            if not (is_s3_answer(exc) or is_transport_error(exc)):
                raise
            bucket = self._storage.settings.bucket
            log.warning(
                "s3_task_request_failed",
                action=action,
                bucket=bucket,
                key=key,
                code=code,
            )
            where = f"'{key}' in S3 bucket '{bucket}' at {self._storage._endpoint}"
            raise request_error(exc, code, action, where) from exc

    # -- one task ----------------------------------------------------------------

    async def put(self, record: TaskRecord) -> None:
        """Write the record in one PUT, with its expiry and owner as metadata."""
        key = self._key(record.task_id, RECORD_SUFFIX)
        body = record.model_dump_json().encode()
        metadata = {
            _EXPIRES: str(_ms(record.expires_at)),
            _OWNER: _owner_tag(record.owner),
        }
        await self._put(key, body, metadata)

    async def _put(self, key: str, body: bytes, metadata: dict[str, str]) -> None:
        s3, bucket = self._storage._s3, self._storage.settings.bucket

        async def put() -> None:
            await s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                Metadata=metadata,
            )

        await self._call("write", key, put)

    async def get(self, task_id: str) -> TaskRecord | None:
        """Return the record, or ``None`` if there is none or it expired.

        Raises:
            StorageError: if S3 fails, or the object is not a task record.
        """
        key = self._key(task_id, RECORD_SUFFIX)
        record = await self._read(key)
        if record is None or record.expired(datetime.now(UTC)):
            return None
        return record

    async def _read(self, key: str) -> TaskRecord | None:
        s3, bucket = self._storage._s3, self._storage.settings.bucket

        async def get() -> bytes:
            response = await s3.get_object(Bucket=bucket, Key=key)
            # Read every body: an unread one holds its pooled connection.
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

        raw: bytes | None = await self._call("read", key, get, missing=None)
        if raw is None:
            return None
        try:
            return TaskRecord.model_validate_json(raw)
        except pydantic.ValidationError:
            raise StorageError(
                f"The object '{key}' in S3 bucket '{bucket}' is not a valid task "
                "record (was it written by something else?)."
            ) from None

    async def _head(self, key: str) -> dict[str, str] | None:
        """The object's user metadata, or ``None`` if it does not exist."""
        s3, bucket = self._storage._s3, self._storage.settings.bucket

        async def head() -> dict[str, str]:
            response = await s3.head_object(Bucket=bucket, Key=key)
            metadata: dict[str, str] = response.get("Metadata") or {}
            return metadata

        result: dict[str, str] | None = await self._call(
            "read", key, head, missing=None
        )
        return result

    async def delete(self, task_id: str) -> None:
        """Delete the record, then the cancel mark; absent ones are no error."""
        keys = [self._key(task_id, RECORD_SUFFIX), self._key(task_id, CANCEL_SUFFIX)]
        await self._storage._delete_keys(keys)

    async def request_cancel(self, task_id: str) -> None:
        """Write the (empty) cancel mark ``<task id>.cancel``."""
        await self._put(self._key(task_id, CANCEL_SUFFIX), b"", {})

    async def cancel_requested(self, task_id: str) -> bool:
        """True if the cancel mark exists (one HEAD request)."""
        return await self._head(self._key(task_id, CANCEL_SUFFIX)) is not None

    # -- many tasks --------------------------------------------------------------

    async def _ids(self, before: str | None = None) -> tuple[list[str], set[str]]:
        """Ids of records (below ``before``), oldest first, and of cancel marks."""
        records: list[str] = []
        marks: set[str] = set()
        stop_at = self._prefix + before if before is not None else None
        async for keys in self._storage._keys(prefix=self._prefix, stop_at=stop_at):
            for key in keys:
                task_id, _, suffix = key[len(self._prefix) :].partition(".")
                try:
                    validate_task_id(task_id)
                except ValidationError:
                    continue  # not ours
                if f".{suffix}" == RECORD_SUFFIX:
                    records.append(task_id)
                elif f".{suffix}" == CANCEL_SUFFIX:
                    marks.add(task_id)
        return records, marks

    async def _expiry_and_owner(self, task_id: str) -> tuple[int, str] | None:
        """What the record's metadata says, from a HEAD; ``None`` if it is gone."""
        key = self._key(task_id, RECORD_SUFFIX)
        metadata = await self._head(key)
        if metadata is None:
            return None
        try:
            return int(metadata[_EXPIRES]), metadata[_OWNER]
        except (KeyError, ValueError):
            # Written without metadata (by hand, or a copy that lost it): read it.
            record = await self._read(key)
            if record is None:
                return None
            return _ms(record.expires_at), _owner_tag(record.owner)

    async def list(
        self, owner: str | None, limit: int = 50, cursor: str | None = None
    ) -> TaskPage:
        """Return ``owner``'s live tasks, newest first, after ``cursor``.

        Lists the keys under ``tasks/``, then checks records newest first by HEAD
        (expiry and owner are metadata), reading only the page's records.

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
        ids, _ = await self._ids(before)
        now, tag = _ms(datetime.now(UTC)), _owner_tag(owner)
        candidates = ids[::-1]
        matches: list[str] = []
        # One more than the page, to know whether another page exists.
        for start in range(0, len(candidates), _CONCURRENCY):
            batch = candidates[start : start + _CONCURRENCY]
            facts = await gather(
                [functools.partial(self._expiry_and_owner, i) for i in batch],
                limit=_CONCURRENCY,
            )
            for task_id, fact in zip(batch, facts, strict=True):
                if fact is not None and fact[0] >= now and fact[1] == tag:
                    matches.append(task_id)
            if len(matches) > limit:
                break
        page_ids = matches[:limit]
        records = await gather(
            [functools.partial(self.get, i) for i in page_ids], limit=_CONCURRENCY
        )
        # Deleted or expired between the HEAD and the read: left out.
        items = [r for r in records if r is not None and r.owner == owner]
        more = len(matches) > limit and bool(page_ids)
        next_cursor = encode_cursor(page_ids[-1], tag=_CURSOR_TAG) if more else None
        return TaskPage(items=items, next_cursor=next_cursor)

    async def delete_expired(self, now: datetime) -> int:
        """Delete expired tasks (records and cancel marks) and orphan cancel marks.

        Expiry is read from each record's metadata (a HEAD per task, no body).

        Returns:
            How many tasks (records) were deleted.
        """
        cutoff = _ms(now)
        ids, marks = await self._ids()
        expired: list[str] = []
        for start in range(0, len(ids), _CONCURRENCY):
            batch = ids[start : start + _CONCURRENCY]
            facts = await gather(
                [functools.partial(self._expiry_and_owner, i) for i in batch],
                limit=_CONCURRENCY,
            )
            expired.extend(
                task_id
                for task_id, fact in zip(batch, facts, strict=True)
                if fact is not None and fact[0] < cutoff
            )
        keys = [self._key(i, RECORD_SUFFIX) for i in expired]
        # Marks of expired tasks, and marks whose task was deleted (a delete
        # interrupted between its two object deletes).
        gone = set(expired) | (marks - set(ids))
        keys += [self._key(i, CANCEL_SUFFIX) for i in sorted(gone & marks)]
        await self._storage._delete_keys(keys)
        if expired:
            log.info("s3_task_records_expired", count=len(expired))
        return len(expired)
