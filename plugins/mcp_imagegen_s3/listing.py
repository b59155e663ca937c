"""The S3 storage's listing: pages newest first, retention and the orphan sweep.

Ids sort by creation time, so S3's ascending key order is creation order.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from mcp_imagegen import (
    ImageNotFoundError,
    ImagePage,
    ImageRecord,
    ValidationError,
    decode_cursor,
    encode_cursor,
    gather,
    id_stamp,
    image_id_time,
)
from mcp_imagegen_s3.base import RECORD_EXTENSION, log
from mcp_imagegen_s3.objects import (
    BATCH_DELETE_SIZE,
    RECORD_FETCH_CONCURRENCY,
    S3Objects,
)

#: Marks S3 cursors, so a cursor of another storage type is refused.
_CURSOR_TAG = "s3:"
#: First listing window before a cursor; each further window is four times wider.
_FIRST_WINDOW = timedelta(minutes=15)
_WINDOW_GROWTH = 4
#: Sorts right after every image key (ids start with a digit, ":" follows "9"):
#: listings stop here, before ``tasks/`` and anything else under the prefix.
_PAST_IDS = ":"


def _orphan_keys(
    objects: builtins.list[dict[str, Any]], older_than: datetime
) -> builtins.list[str]:
    """The image keys among one id's objects, if it has no record, that are old."""
    keys = [str(obj["Key"]) for obj in objects]
    if any(key.endswith("." + RECORD_EXTENSION) for key in keys):
        return []
    return [str(obj["Key"]) for obj in objects if obj["LastModified"] < older_than]


class S3Listing(S3Objects):
    """Lists records newest first, deletes expired images, sweeps orphans."""

    async def list(self, limit: int = 20, cursor: str | None = None) -> ImagePage:
        """Return up to ``limit`` records, newest first.

        Raises:
            ValidationError: if ``limit`` is below 1 or ``cursor`` was not issued by
                this storage.
        """
        if limit < 1:
            raise ValidationError(f"limit must be at least 1, got {limit}.")
        before = decode_cursor(cursor, tag=_CURSOR_TAG) if cursor is not None else None
        ids = await self._newest_ids(limit + 1, before)
        page_ids = ids[:limit]
        records = await gather(
            [functools.partial(self._record_or_none, i) for i in page_ids],
            limit=RECORD_FETCH_CONCURRENCY,
        )
        items = [record for record in records if record is not None]
        next_cursor = (
            encode_cursor(page_ids[-1], tag=_CURSOR_TAG) if len(ids) > limit else None
        )
        return ImagePage(items=items, next_cursor=next_cursor)

    async def _record_or_none(self, image_id: str) -> ImageRecord | None:
        try:
            return await self.get_record(image_id)
        except ImageNotFoundError:  # deleted between listing and reading
            return None

    async def _newest_ids(self, count: int, before: str | None) -> builtins.list[str]:
        """Return up to ``count`` ids of stored records, newest first, below ``before``.

        S3 lists keys in ascending order only, so the newest ids are found by listing
        time windows that reach further back each time: the window right before the
        cursor (or now) first, then ones four times wider, until enough ids are found
        or the oldest key is passed. Recent images cost one listing request.
        """
        upper = self._prefix + (before if before is not None else _PAST_IDS)
        anchor = image_id_time(before) if before is not None else datetime.now(UTC)
        span = _FIRST_WINDOW
        oldest: str | None = None
        found: list[str] = []
        while True:
            lower = self._window_start(anchor, span)
            window: list[str] = []
            async for keys in self._keys(start_after=lower, stop_at=upper):
                for key in keys:
                    parsed = self._parse_key(key)
                    if parsed is not None and parsed[1] == RECORD_EXTENSION:
                        window.append(parsed[0])
            found.extend(reversed(window))
            if len(found) >= count or lower is None:
                return found[:count]
            if oldest is None:
                oldest = await self._first_key()
            if oldest is None or lower <= oldest:
                return found  # every key is above ``lower``: nothing older is left
            upper = lower
            span *= _WINDOW_GROWTH

    def _window_start(self, anchor: datetime, span: timedelta) -> str | None:
        try:
            start = anchor - span
        except OverflowError:
            return None
        # Ids carry four-digit years; anything older is listed from the start.
        return None if start.year < 1000 else self._prefix + id_stamp(start)

    async def delete_expired(self, older_than: datetime) -> int:
        """Delete every image whose id says it was created before ``older_than``.

        Keys sort by creation time, so only the expired part of the bucket is listed.
        Objects under the prefix that are not images of this server are never touched.

        Returns:
            How many images (records) were deleted.
        """
        older_than = (
            older_than.replace(tzinfo=UTC) if older_than.tzinfo is None else older_than
        )
        # Ids hold milliseconds: an id is older than ``older_than`` exactly when its
        # stamp is below ``older_than`` rounded up to the next millisecond.
        rounded_up = older_than + timedelta(microseconds=-older_than.microsecond % 1000)
        stop_at = self._prefix + id_stamp(rounded_up)
        deleted = 0
        async for page in self._keys(stop_at=stop_at):
            records: list[str] = []
            images: list[str] = []
            for key in page:
                parsed = self._parse_key(key)
                if parsed is not None:
                    self._extensions.forget(parsed[0])
                    (records if parsed[1] == RECORD_EXTENSION else images).append(key)
            await self._delete_keys(records)
            await self._delete_keys(images)
            deleted += len(records)
        if deleted:
            log.info(
                "s3_expired_images_deleted", count=deleted, older_than=str(older_than)
            )
        return deleted

    async def remove_orphans(self, older_than: datetime) -> int:
        """Delete image objects without a record last modified before ``older_than``.

        A save interrupted between its two puts (a crash, an outage) or a delete
        interrupted between its two deletes leaves an image object without its
        record: invisible, never listed, never expired. Saves use single PUTs, so
        no multipart uploads are left. Objects under the prefix that are not this
        server's are never touched.

        Returns:
            How many objects were deleted.
        """
        cutoff = (
            older_than.replace(tzinfo=UTC) if older_than.tzinfo is None else older_than
        )
        removed = 0
        orphans: builtins.list[str] = []
        async for objects in self._objects_by_id():
            orphans.extend(_orphan_keys(objects, cutoff))
            if len(orphans) >= BATCH_DELETE_SIZE:  # keep memory flat
                await self._delete_keys(orphans)
                removed, orphans = removed + len(orphans), []
        await self._delete_keys(orphans)
        removed += len(orphans)
        if removed:
            log.info("s3_orphans_removed", count=removed, older_than=str(cutoff))
        return removed

    async def _objects_by_id(self) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """Yield the listing entries of each id's objects (image and record)."""
        # Keys sort by id, so one id's objects are neighbours (perhaps split
        # across two listing pages).
        current: str | None = None
        group: builtins.list[dict[str, Any]] = []
        async for page in self._objects(stop_at=self._prefix + _PAST_IDS):
            for obj in page:
                parsed = self._parse_key(obj["Key"])
                if parsed is None:
                    continue
                if parsed[0] != current and group:
                    yield group
                    group = []
                current = parsed[0]
                group.append(obj)
        if group:
            yield group
