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
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiofiles
import aiofiles.os
import anyio
import platformdirs
import structlog
from platformdirs.api import PlatformDirsABC
from pydantic import Field, field_validator

from mcp_imagegen import (
    ComponentSettings,
    ConfigurationError,
    ImageNotFoundError,
    ImagePage,
    ImageRecord,
    ImageStorage,
    StorageError,
    StoredImage,
    ValidationError,
    image_id_time,
    validate_image_id,
)

log = structlog.get_logger(__name__)

_RECORD_SUFFIX = ".json"
_TEMP_PREFIX = ".tmp-"
#: How many image extensions are remembered (an LRU): bounded, so memory does
#: not grow with the number of stored images.
_EXTENSION_CACHE_SIZE = 4096
#: At start-up, leftovers of interrupted saves older than this are removed. The
#: storage does not see ``storage.orphan_grace``; an hour is far longer than any
#: save, so a save in progress in another process is never touched.
STARTUP_ORPHAN_GRACE = timedelta(hours=1)
_DAY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_HOUR_RE = re.compile(r"^[0-9]{2}$")
_SHARD_SPAN = timedelta(hours=1)
_MTIME_TRUST_NS = 2_000_000_000


def default_directory(platform: type[PlatformDirsABC] | None = None) -> Path:
    """The per-user image directory, from ``platformdirs``.

    ``$XDG_DATA_HOME/mcp-imagegen/images`` (else ``~/.local/share/...``) on Linux,
    ``~/Library/Application Support/mcp-imagegen/images`` on macOS,
    ``%LOCALAPPDATA%\\mcp-imagegen\\images`` on Windows. A relative
    ``XDG_DATA_HOME`` is ignored, as the XDG spec asks: it would make the
    directory depend on where the server was started.

    Args:
        platform: A platformdirs class to apply another system's rules; the
            running system's by default.
    """
    dirs = (platform or platformdirs.PlatformDirs)("mcp-imagegen", appauthor=False)
    return Path(dirs.user_data_dir) / "images"


class FileStorageSettings(ComponentSettings):
    """``[storage.file]``."""

    #: Where images are kept; ``~`` is expanded, relative paths are refused.
    directory: Path = Field(default_factory=default_directory)
    #: If set, ``url_for`` returns ``<base_url>/<id>.<ext>`` (e.g. served by nginx)
    #: instead of a ``file://`` URI.
    base_url: str | None = None
    #: Largest image ``load`` will read, in bytes.
    max_load_bytes: int = 64 * 1024 * 1024

    @field_validator("directory", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        value = value.expanduser()
        if not value.is_absolute():
            raise ValueError(
                f"must be an absolute path (got '{value}'); relative paths would "
                "depend on the directory the server was started from"
            )
        return value

    @field_validator("base_url", mode="after")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value


class FileStorage(ImageStorage):
    """Stores images as files under one directory, in a folder per day and hour."""

    name = "file"
    Settings = FileStorageSettings
    settings: FileStorageSettings

    @property
    def directory(self) -> Path:
        """The directory images are kept in."""
        return self.settings.directory

    def __init__(
        self, settings: FileStorageSettings, *, instance_name: str = ""
    ) -> None:
        super().__init__(settings, instance_name=instance_name)
        # id -> file extension of images this process saved or read, so links and
        # paths for them need no second read of the record.
        self._extensions: OrderedDict[str, str] = OrderedDict()
        # (mtime of the directory, its day folders): a page needs the day list,
        # and a directory that once held a flat store of 100k images stays large
        # on ext4 after the migration, so listing it costs ~1 ms; a stat does not.
        self._days: tuple[int, list[str]] | None = None

    def _remember(self, record: ImageRecord) -> None:
        self._extensions[record.id] = record.extension
        self._extensions.move_to_end(record.id)
        if len(self._extensions) > _EXTENSION_CACHE_SIZE:
            self._extensions.popitem(last=False)

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

    async def check(self) -> None:
        """Check, creating nothing, that the directory is or can be made writable.

        Raises:
            ConfigurationError: naming ``storage.file.directory`` and the problem.
        """
        problem = await anyio.to_thread.run_sync(self._directory_problem)
        if problem:
            raise ConfigurationError(
                f"storage.file.directory: {self.directory} {problem}. Set it to a "
                "writable directory."
            )

    def _directory_problem(self) -> str | None:
        # The nearest existing ancestor decides: mkdir(parents=True) creates the rest.
        path = self.directory
        while not path.exists() and path != path.parent:
            path = path.parent
        if not path.is_dir():
            return f"cannot be created: {path} is not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            if path == self.directory:
                return "is not writable"
            return f"cannot be created: {path} is not writable"
        return None

    def _check_writable(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f"{_TEMP_PREFIX}probe-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"Image directory {self.directory} is not writable: "
                f"{exc.strerror or exc}. Set storage.file.directory to a writable "
                "directory."
            ) from None

    def _migrate_flat_layout(self) -> int:
        """Move ``<directory>/<id>.*`` (earlier versions' layout) into shards.

        Each file moves by one atomic rename, the record last, as it is written
        last: a crash half way leaves the record behind with its image already
        moved, and the next start moves the record. Returns how many images moved.
        """
        groups: dict[str, list[str]] = {}
        for name in self._names(self.directory):
            image_id, dot, _ = name.partition(".")
            if not dot or not _is_image_id(image_id):
                continue
            if (self.directory / name).is_file():
                groups.setdefault(image_id, []).append(name)
        for image_id, names in groups.items():
            shard = self._shard(image_id)
            try:
                shard.mkdir(parents=True, exist_ok=True)
                for name in sorted(names, key=lambda n: n.endswith(_RECORD_SUFFIX)):
                    os.replace(self.directory / name, shard / name)
            except OSError as exc:
                raise StorageError(
                    f"Could not move image '{image_id}' from {self.directory} into "
                    f"{shard}: {exc.strerror or exc}."
                ) from None
        if groups:
            log.info("file_storage_migrated", images=len(groups))
        return len(groups)

    # -- paths -------------------------------------------------------------------

    def _shard(self, image_id: str) -> Path:
        """``<directory>/<YYYY-MM-DD>/<HH>``: the day and hour in the id."""
        image_id = validate_image_id(image_id)
        day = f"{image_id[0:4]}-{image_id[4:6]}-{image_id[6:8]}"
        return self.directory / day / image_id[9:11]

    def _record_path(self, image_id: str) -> Path:
        return self._shard(image_id) / f"{image_id}{_RECORD_SUFFIX}"

    def _image_path(self, image_id: str, extension: str) -> Path:
        return self._shard(image_id) / f"{image_id}.{extension}"

    def local_path(self, image_id: str) -> Path | None:
        """Return the image file's path (the record names the extension)."""
        extension = self._extensions.get(validate_image_id(image_id))
        if extension is not None:
            return self._image_path(image_id, extension)
        try:
            record = ImageRecord.model_validate_json(
                self._record_path(image_id).read_bytes()
            )
        except (OSError, ValueError):
            return None
        return self._image_path(image_id, record.extension)

    # -- writes ------------------------------------------------------------------

    async def save(self, record: ImageRecord, data: bytes) -> None:
        """Write the image, then its record, each atomically."""
        validate_image_id(record.id)
        # One executor call writes both files (no hop per write, flush, fsync and
        # rename), shielded like a thread call: a cancelled caller never leaves a
        # save half done, and the extension is remembered once it is complete.
        with anyio.CancelScope(shield=True):
            await aiofiles.os.wrap(self._save_sync)(record, data)
        self._remember(record)

    def _save_sync(self, record: ImageRecord, data: bytes) -> None:
        image_path = self._image_path(record.id, record.extension)
        record_path = self._record_path(record.id)
        if record_path.exists():
            raise StorageError(f"An image with id '{record.id}' already exists.")
        try:
            # A sweep removes empty shards of past hours; a save into one (an
            # imported id) recreates it if the sweep raced it.
            for attempt in range(3):
                image_path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    _write_atomic(image_path, data)
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
            _write_atomic(record_path, record.model_dump_json(indent=2).encode())
        except OSError as exc:
            with contextlib.suppress(OSError):
                image_path.unlink()
            raise StorageError(
                f"Could not save image '{record.id}' in {self.directory}: "
                f"{exc.strerror or exc}."
            ) from None

    async def delete(self, image_id: str) -> None:
        """Remove the record (the image disappears at once), then the image."""
        record = await self.get_record(image_id)
        self._extensions.pop(record.id, None)
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
            self._extensions.pop(record.id, None)
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.unlink(self._image_path(record.id, record.extension))

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
        for day in _shard_names(self._names(self.directory), _DAY_RE):
            day_dir = self.directory / day
            for hour in _shard_names(self._names(day_dir), _HOUR_RE):
                removed += self._remove_orphans_in(day_dir / hour, cutoff)
                if _shard_start(day, hour) + _SHARD_SPAN <= older_than:
                    with contextlib.suppress(OSError):  # not empty: kept
                        (day_dir / hour).rmdir()
            if _shard_start(day, "00") + timedelta(days=1) <= older_than:
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
            name = entry.name
            image_id, dot, extension = name.partition(".")
            if not name.startswith(_TEMP_PREFIX) and (
                not dot
                or extension == _RECORD_SUFFIX[1:]
                or not _is_image_id(image_id)
                or f"{image_id}{_RECORD_SUFFIX}" in names
            ):
                continue  # a record, a complete image, or not ours
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue  # maybe a save in progress
                if (
                    not name.startswith(_TEMP_PREFIX)
                    and (directory / f"{image_id}{_RECORD_SUFFIX}").exists()
                ):
                    continue  # its save completed meanwhile
                os.unlink(entry.path)
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("file_storage_orphan_kept", file=entry.path, error=str(exc))
        return removed

    # -- reads -------------------------------------------------------------------

    async def get_record(self, image_id: str) -> ImageRecord:
        """Read and parse the record ``<id>.json``."""
        raw = await self._read(self._record_path(image_id), image_id)
        try:
            record = ImageRecord.model_validate_json(raw)
        except ValueError:
            raise StorageError(
                f"The metadata of image '{image_id}' is corrupt."
            ) from None
        self._remember(record)
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

    def _names(self, directory: Path) -> list[str]:
        try:
            return os.listdir(directory)
        except FileNotFoundError:
            return []  # a shard removed meanwhile
        except OSError as exc:
            raise StorageError(
                f"Could not list {directory}: {exc.strerror or exc}."
            ) from None

    async def _listdir(self, directory: Path) -> list[str]:
        try:
            return await aiofiles.os.listdir(directory)
        except FileNotFoundError:
            return []  # a shard removed meanwhile
        except OSError as exc:
            raise StorageError(
                f"Could not list {directory}: {exc.strerror or exc}."
            ) from None

    async def _subdirs(self, directory: Path, pattern: re.Pattern[str]) -> list[str]:
        """Names of shard folders in ``directory``, sorted oldest first."""
        return _shard_names(await self._listdir(directory), pattern)

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
        days = await self._subdirs(self.directory, _DAY_RE)
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
            if name.endswith(_RECORD_SUFFIX) and not name.startswith("."):
                image_id = name[: -len(_RECORD_SUFFIX)]
                if _is_image_id(image_id):
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
            hours = await self._subdirs(day_dir, _HOUR_RE)
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
            hours = await self._subdirs(day_dir, _HOUR_RE)
            for hour in hours:
                if day == last_day and hour > last_hour:
                    break
                yield await self._shard_ids(day_dir / hour)

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


def _shard_names(names: list[str], pattern: re.Pattern[str]) -> list[str]:
    """The names of shard folders among ``names``, sorted oldest first.

    Other folders (``2026-13-99``, ``photos``) are not ours and are ignored.
    """
    shards = []
    for name in names:
        if not pattern.fullmatch(name):
            continue
        if pattern is _DAY_RE:
            try:
                _shard_start(name, "00")
            except ValueError:
                continue
        elif int(name) > 23:
            continue
        shards.append(name)
    return sorted(shards)


def _is_image_id(name: str) -> bool:
    try:
        validate_image_id(name)
    except ValidationError:
        return False
    return True


def _shard_start(day: str, hour: str) -> datetime:
    return datetime.strptime(f"{day} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)


def _id_floor(moment: datetime) -> str:
    """The smallest id of ``moment``'s millisecond (ids compare as strings)."""
    moment = moment.astimezone(UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}"
    return f"{stamp}-{'0' * 12}"


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f"{_TEMP_PREFIX}{path.name}-{secrets.token_hex(4)}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def encode_cursor(last_id: str) -> str:
    """Make an opaque cursor from the last id of a page."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Return the id inside a cursor made by :func:`encode_cursor`.

    Raises:
        ValidationError: if the cursor was not made by this storage.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return validate_image_id(base64.urlsafe_b64decode(padded.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError, ValidationError):
        raise ValidationError(
            "Invalid cursor: pass the next_cursor value of a previous listing."
        ) from None
