"""The file storage's listing: pages newest first, reading only the shards needed.

A listing page reads only the newest shards it needs, newest first, so its cost
follows the page size, not the size of the store.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import aiofiles.os

from mcp_imagegen import (
    ImageNotFoundError,
    ImagePage,
    ImageRecord,
    StorageError,
    ValidationError,
    decode_cursor,
    encode_cursor,
)
from mcp_imagegen_file.files import FileIO
from mcp_imagegen_file.layout import (
    DAY_RE,
    HOUR_RE,
    RECORD_SUFFIX,
    is_image_id,
    shard_names,
)

_MTIME_TRUST_NS = 2_000_000_000


class FileListing(FileIO):
    """Lists records newest first and walks the shards in either direction."""

    async def _listdir(self, directory: Path) -> list[str]:
        """:meth:`_names` in a worker thread."""
        names: list[str] = await aiofiles.os.wrap(self._names)(directory)
        return names

    async def _subdirs(self, directory: Path, pattern: re.Pattern[str]) -> list[str]:
        """Names of shard folders in ``directory``, sorted oldest first."""
        return shard_names(await self._listdir(directory), pattern)

    async def _day_names(self) -> list[str]:
        """The day folders, oldest first, listed again only when they changed."""
        try:
            changed = (await aiofiles.os.stat(self.directory)).st_mtime_ns
        except OSError as exc:
            raise StorageError(
                f"Could not list {self.directory}: {exc.strerror or exc}."
            ) from None
        if self._days is not None and self._days[0] == changed:
            return self._days[1]
        days = await self._subdirs(self.directory, DAY_RE)
        # Trusted only if the directory had been unchanged for a while when
        # listed: a change in the same timestamp tick (coarse on some file
        # systems) would otherwise leave the mtime, and a stale list, in place.
        if time.time_ns() - changed > _MTIME_TRUST_NS:
            self._days = (changed, days)
        return days

    async def _shard_ids(self, shard: Path) -> list[str]:
        """Ids of the records in one shard, sorted oldest first."""
        ids = []
        for name in await self._listdir(shard):
            if name.endswith(RECORD_SUFFIX) and not name.startswith("."):
                image_id = name[: -len(RECORD_SUFFIX)]
                if is_image_id(image_id):
                    ids.append(image_id)
        ids.sort()
        return ids

    async def _shard_ids_newest_first(
        self, before: str | None
    ) -> AsyncGenerator[list[str], None]:
        """Yield the ids below ``before`` shard by shard, newest first.

        Shards newer than ``before`` are skipped unread, and the caller stops
        iterating once its page is full, so a page reads O(page) shards.
        """
        last_day = last_hour = None
        if before is not None:
            last_shard = self._shard(before)
            last_day, last_hour = last_shard.parent.name, last_shard.name
        days = await self._day_names()
        for day in reversed(days):
            if last_day is not None and day > last_day:
                continue
            day_dir = self.directory / day
            hours = await self._subdirs(day_dir, HOUR_RE)
            for hour in reversed(hours):
                if day == last_day and last_hour is not None and hour > last_hour:
                    continue
                ids = await self._shard_ids(day_dir / hour)
                ids = [i for i in reversed(ids) if before is None or i < before]
                if ids:
                    yield ids

    async def _shard_ids_oldest_first(
        self, below: str
    ) -> AsyncGenerator[list[str], None]:
        """Yield the ids of every shard that starts at or before ``below``."""
        last_shard = self._shard(below)
        last_day, last_hour = last_shard.parent.name, last_shard.name
        days = await self._day_names()
        for day in days:
            if day > last_day:
                break
            day_dir = self.directory / day
            hours = await self._subdirs(day_dir, HOUR_RE)
            for hour in hours:
                if day == last_day and hour > last_hour:
                    break
                yield await self._shard_ids(day_dir / hour)

    # Defined last: in the class body, ``list`` names this method from here on.
    async def list(self, limit: int = 20, cursor: str | None = None) -> ImagePage:
        """List records newest first; the cursor encodes the last id returned.

        Images deleted while the page is read are left out: a page shows what
        exists when it is read, and a concurrent delete is never an error.
        """
        if limit < 1:
            raise ValidationError(f"limit {limit} is out of range: use 1 or more.")
        after = decode_cursor(cursor) if cursor else None
        items: list[ImageRecord] = []
        shards = self._shard_ids_newest_first(after)
        try:
            async for ids in shards:
                for image_id in ids:
                    if len(items) == limit:
                        # Records deleted meanwhile are skipped, so only now is
                        # it known whether another page exists.
                        return ImagePage(
                            items=items, next_cursor=encode_cursor(items[-1].id)
                        )
                    try:
                        items.append(await self.get_record(image_id))
                    except ImageNotFoundError:
                        continue  # deleted while listing
        finally:
            await shards.aclose()
        return ImagePage(items=items)
