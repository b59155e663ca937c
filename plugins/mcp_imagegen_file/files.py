"""The file storage's I/O: atomic writes, reads and deletes of one image.

Every file is written to a hidden temporary name, fsynced and renamed, so no
reader ever sees a partial file; a save fsyncs its image and record together
before renaming either, and the folder after renaming both (a new name is
durable only once its folder is). The record is written last and removed
first, so it is the marker that an image exists.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiofiles
import aiofiles.os
import anyio

from mcp_imagegen import (
    ImageNotFoundError,
    ImageRecord,
    StorageError,
    StoredImage,
    validate_image_id,
)
from mcp_imagegen_file.layout import TEMP_PREFIX, FileLayout

#: Runs the other files' fsyncs of one save while its own thread fsyncs the first.
#: Two fsyncs in flight at once share one journal commit: measured on ext4, a
#: save's two sequential fsyncs took ~7 ms on a busy disk, overlapped ~0.8 ms.
_FSYNCS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="mcp-imagegen-fsync")


#: What a file system that cannot fsync a folder answers (some FUSE and network
#: file systems); PostgreSQL's ``fsync_fname`` takes these as "nothing to do" too.
_NO_FOLDER_FSYNC = frozenset(
    {errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EOPNOTSUPP}
)


def fsync_directory(path: Path) -> None:
    """Make the entries of folder ``path`` durable (new and renamed names).

    fsync of a file makes its data durable, not its name: after a power loss a
    file renamed into a folder whose own fsync never ran may be gone. A file
    system that cannot fsync folders is left as it is; a real I/O error raises.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_FOLDER_FSYNC:
            raise
    finally:
        os.close(fd)


def write_atomic(*files: tuple[Path, bytes]) -> None:
    """Write each ``(path, data)`` atomically: temporary names, fsync, rename.

    Every file is written to a temporary name beside its path first, then all
    are fsynced at once, and only then renamed, in the order given, and their
    folders fsynced. So when the second file (a record) appears, the first (its
    image) is complete and durable; when this returns, both names are durable
    too; a failure before the renames leaves no file under its final name.
    """
    temps: list[Path] = []
    fds: list[int] = []
    try:
        for path, data in files:
            temp = path.with_name(f"{TEMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
            fds.append(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            temps.append(temp)
            view = memoryview(data)
            while view:
                written = os.write(fds[-1], view)
                view = view[written:]
        others = [_FSYNCS.submit(os.fsync, fd) for fd in fds[1:]]
        try:
            os.fsync(fds[0])
        finally:
            for done in others:
                done.result()  # waits for each even when an earlier one failed
        for fd in fds:
            os.close(fd)
        fds.clear()
        for temp, (path, _) in zip(temps, files, strict=True):
            os.replace(temp, path)
        temps.clear()
        for folder in dict.fromkeys(path.parent for path, _ in files):
            fsync_directory(folder)
    except BaseException:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()
        raise


class FileIO(FileLayout):
    """Saves, reads and deletes one image and its record."""

    #: The shard folder the last save made sure of (see :meth:`_save_sync`).
    _known_shard: Path | None = None

    async def save(self, record: ImageRecord, data: bytes) -> None:
        """Write the image and its record atomically; the record appears last."""
        validate_image_id(record.id)
        # One executor call writes both files (no hop per write, flush, fsync and
        # rename), shielded like a thread call: a cancelled caller never leaves a
        # save half done, and the extension is remembered once it is complete.
        with anyio.CancelScope(shield=True):
            await aiofiles.os.wrap(self._save_sync)(record, data)
        self._extensions.remember(record)

    def _save_sync(self, record: ImageRecord, data: bytes) -> None:
        image_path = self._image_path(record.id, record.extension)
        record_path = self._record_path(record.id)
        if record_path.exists():
            raise StorageError(f"An image with id '{record.id}' already exists.")
        try:
            # A sweep removes empty shards of past hours; a save into one (an
            # imported id) recreates it if the sweep raced it.
            for attempt in range(3):
                # The shard of the current hour exists after its first save:
                # skip the mkdir (a failed syscall and a stat) for the rest; a
                # sweep that removed it meanwhile fails the write, and the
                # retry makes it again.
                shard = image_path.parent
                if attempt or shard != self._known_shard:
                    created = not shard.is_dir()
                    shard.mkdir(parents=True, exist_ok=True)
                    if created:
                        # The new hour (and perhaps day) folder's names.
                        fsync_directory(shard.parent)
                        fsync_directory(shard.parent.parent)
                    self._known_shard = shard
                try:
                    write_atomic(
                        (image_path, data),
                        (record_path, record.model_dump_json(indent=2).encode()),
                    )
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        except OSError as exc:
            # The record first (it marks the image as there): a failure after the
            # renames (fsync of the folder) leaves neither file behind either.
            for path in (record_path, image_path):
                with contextlib.suppress(OSError):
                    path.unlink()
            raise StorageError(
                f"Could not save image '{record.id}' in {self.directory}: "
                f"{exc.strerror or exc}."
            ) from None

    async def delete(self, image_id: str) -> None:
        """Remove the record (the image disappears at once), then the image."""
        record = await self.get_record(image_id)
        self._extensions.forget(record.id)
        try:
            await aiofiles.os.unlink(self._record_path(record.id))
        except FileNotFoundError:
            raise ImageNotFoundError(record.id) from None
        except OSError as exc:
            raise StorageError(
                f"Could not delete image '{record.id}': {exc.strerror or exc}."
            ) from None
        finally:
            # A listing reading this record meanwhile may have remembered it again.
            self._extensions.forget(record.id)
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.unlink(self._image_path(record.id, record.extension))

    async def get_record(self, image_id: str) -> ImageRecord:
        """Read and parse the record ``<id>.json``."""
        raw = await self._read(self._record_path(image_id), image_id)
        try:
            record = ImageRecord.model_validate_json(raw)
        except ValueError:
            raise StorageError(
                f"The metadata of image '{image_id}' is corrupt."
            ) from None
        self._extensions.remember(record)
        return record

    async def _read(self, path: Path, image_id: str, limit: int = -1) -> bytes:
        """Read a file (up to ``limit`` bytes), naming the image in errors."""
        try:
            async with aiofiles.open(path, "rb") as handle:
                return await handle.read(limit)
        except FileNotFoundError:
            raise ImageNotFoundError(image_id) from None
        except OSError as exc:
            raise StorageError(
                f"Could not read image '{image_id}': {exc.strerror or exc}."
            ) from None

    async def load(self, image_id: str) -> StoredImage:
        """Read the record and the image bytes."""
        record = await self.get_record(image_id)
        limit = self.settings.max_load_bytes
        path = self._image_path(record.id, record.extension)
        data = await self._read(path, record.id, limit + 1)
        if len(data) > limit:
            raise StorageError(
                f"Image '{record.id}' is larger than storage.file.max_load_bytes "
                f"({limit} bytes)."
            )
        return StoredImage(record=record, data=data)
