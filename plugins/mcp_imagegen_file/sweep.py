"""The file storage's sweeps: retention, and leftovers of interrupted saves.

What an interrupted save leaves behind (a temporary file, an image without its
record) is removed by :meth:`FileSweep.remove_orphans`: by the retention task, and
at start-up for leftovers older than an hour.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiofiles.os

from mcp_imagegen import ImageNotFoundError, StorageError, id_stamp, image_id_time
from mcp_imagegen_file.layout import (
    DAY_RE,
    HOUR_RE,
    RECORD_SUFFIX,
    TEMP_PREFIX,
    is_image_id,
    log,
    shard_names,
    shard_start,
)
from mcp_imagegen_file.listing import FileListing

_SHARD_SPAN = timedelta(hours=1)


def _id_floor(moment: datetime) -> str:
    """The smallest id of ``moment``'s millisecond (ids compare as strings)."""
    return f"{id_stamp(moment)}-{'0' * 12}"


def _is_orphan_candidate(name: str, names: set[str]) -> bool:
    """True for a temporary file, or an image of ours whose record is missing."""
    if name.startswith(TEMP_PREFIX):
        return True
    image_id, dot, extension = name.partition(".")
    return bool(
        dot
        and extension != RECORD_SUFFIX[1:]
        and is_image_id(image_id)
        and f"{image_id}{RECORD_SUFFIX}" not in names
    )


class FileSweep(FileListing):
    """Deletes expired images and removes what interrupted saves left."""

    async def delete_expired(self, older_than: datetime) -> int:
        """Delete images whose id says they were created before ``older_than``.

        Only shards that start before the cut-off are read. A naive
        ``older_than`` is taken as UTC.
        """
        if older_than.tzinfo is None:
            older_than = older_than.replace(tzinfo=UTC)
        cutoff_id = _id_floor(older_than)
        deleted = 0
        async for ids in self._shard_ids_oldest_first(cutoff_id):
            for image_id in ids:
                if image_id_time(image_id) >= older_than:
                    continue
                try:
                    await self.delete(image_id)
                    deleted += 1
                except ImageNotFoundError:
                    continue  # deleted concurrently
        return deleted

    async def remove_orphans(self, older_than: datetime) -> int:
        """Remove ``.tmp-*`` files and images without a record last changed
        before ``older_than``, and empty shards of hours that ended before it.

        Complete images are never touched: an image counts as an orphan only if
        its record is missing when it is about to be removed. A naive
        ``older_than`` is taken as UTC. Returns how many files were removed.
        """
        if older_than.tzinfo is None:
            older_than = older_than.replace(tzinfo=UTC)
        removed: int = await aiofiles.os.wrap(self._remove_orphans_sync)(older_than)
        return removed

    def _remove_orphans_sync(self, older_than: datetime) -> int:
        cutoff = older_than.timestamp()
        removed = self._remove_orphans_in(self.directory, cutoff)
        for day in shard_names(self._names(self.directory), DAY_RE):
            day_dir = self.directory / day
            for hour in shard_names(self._names(day_dir), HOUR_RE):
                removed += self._remove_orphans_in(day_dir / hour, cutoff)
                if shard_start(day, hour) + _SHARD_SPAN <= older_than:
                    with contextlib.suppress(OSError):  # not empty: kept
                        (day_dir / hour).rmdir()
            if shard_start(day, "00") + timedelta(days=1) <= older_than:
                with contextlib.suppress(OSError):
                    day_dir.rmdir()
        if removed:
            log.info("file_storage_orphans_removed", files=removed)
        return removed

    def _remove_orphans_in(self, directory: Path, cutoff: float) -> int:
        removed = 0
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StorageError(
                f"Could not list {directory}: {exc.strerror or exc}."
            ) from None
        names = {entry.name for entry in entries}
        for entry in entries:
            if not _is_orphan_candidate(entry.name, names):
                continue  # a record, a complete image, or not ours
            try:
                removed += self._remove_orphan(directory, entry, cutoff)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("file_storage_orphan_kept", file=entry.path, error=str(exc))
        return removed

    def _remove_orphan(
        self, directory: Path, entry: os.DirEntry[str], cutoff: float
    ) -> int:
        """Remove one candidate if it is an old file still without its record."""
        if not entry.is_file(follow_symlinks=False):
            return 0
        if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
            return 0  # maybe a save in progress
        image_id = entry.name.partition(".")[0]
        if (
            not entry.name.startswith(TEMP_PREFIX)
            and (directory / f"{image_id}{RECORD_SUFFIX}").exists()
        ):
            return 0  # its save completed meanwhile
        os.unlink(entry.path)
        return 1
