"""Local (or PVC-mounted) file storage.

Layout: ``<directory>/<YYYY-MM-DD>/<HH>/<id>.<ext>`` holds the image and
``<id>.json`` beside it its record; day and hour (UTC) come from the id, which
is time-ordered. A listing page therefore reads only the newest shards it needs,
newest first, so its cost follows the page size, not the size of the store.
Images kept flat in ``<directory>`` by earlier versions are moved into their
shards at start-up (image first, record last, each by an atomic rename).

The record is written last and removed first, so it is the marker that an
image exists: listings and loads only see images whose record is in place.
Every file is written to a hidden temporary name, fsynced and renamed, so no
reader ever sees a partial file. What an interrupted save leaves behind (a
temporary file, an image without its record) is removed by
:meth:`FileStorage.remove_orphans`: by the retention task, and at start-up for
leftovers older than an hour.

The class is assembled from one module per responsibility: :mod:`.layout`
(paths, checks, migration), :mod:`.files` (atomic I/O), :mod:`.listing` (pages)
and :mod:`.sweep` (retention, orphans).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiofiles.os

from mcp_imagegen import validate_image_id
from mcp_imagegen_file.layout import log
from mcp_imagegen_file.settings import FileStorageSettings, default_directory
from mcp_imagegen_file.sweep import FileSweep
from mcp_imagegen_file.tasks import TASKS_FOLDER, FileTaskStore

__all__ = [
    "STARTUP_ORPHAN_GRACE",
    "FileStorage",
    "FileStorageSettings",
    "default_directory",
]

#: At start-up, leftovers of interrupted saves older than this are removed. The
#: storage does not see ``storage.orphan_grace``; an hour is far longer than any
#: save, so a save in progress in another process is never touched.
STARTUP_ORPHAN_GRACE = timedelta(hours=1)


class FileStorage(FileSweep):
    """Stores images as files under one directory, in a folder per day and hour."""

    name = "file"
    Settings = FileStorageSettings
    settings: FileStorageSettings

    async def start(self) -> None:
        """Create the directory, prove it is writable, move images of the flat
        layout into their shards and remove old leftovers of interrupted saves.

        Raises:
            StorageError: naming the directory and the OS error.
        """
        await aiofiles.os.wrap(self._check_writable)()
        migrated: int = await aiofiles.os.wrap(self._migrate_flat_layout)()
        removed = await self.remove_orphans(datetime.now(UTC) - STARTUP_ORPHAN_GRACE)
        log.debug(
            "file_storage_ready",
            directory=str(self.directory),
            migrated=migrated,
            orphans_removed=removed,
        )

    async def url_for(self, image_id: str) -> str:
        """``base_url`` link when configured, else a ``file://`` URI."""
        extension = self._extensions.get(validate_image_id(image_id))
        if extension is None:
            extension = (await self.get_record(image_id)).extension
        path = self._image_path(image_id, extension)
        if self.settings.base_url:
            relative = path.relative_to(self.directory).as_posix()
            return f"{self.settings.base_url}/{relative}"
        return path.as_uri()

    def task_store(self) -> FileTaskStore:
        """MCP task records in ``<directory>/tasks`` (see :mod:`.tasks`)."""
        return FileTaskStore(self.directory / TASKS_FOLDER)
