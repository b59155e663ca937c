"""The file storage's layout: a folder per day and hour, and the move into it.

``<directory>/<YYYY-MM-DD>/<HH>/<id>.<ext>`` holds the image and ``<id>.json``
beside it its record; day and hour (UTC) come from the id, which is time-ordered.
Images kept flat in ``<directory>`` by earlier versions are moved into their shards
at start-up (image first, record last, each by an atomic rename).
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import anyio
import structlog

from mcp_imagegen import (
    ConfigurationError,
    ExtensionCache,
    ImageRecord,
    ImageStorage,
    StorageError,
    ValidationError,
    validate_image_id,
)
from mcp_imagegen_file.settings import FileStorageSettings

log = structlog.get_logger("mcp_imagegen_file.storage")

RECORD_SUFFIX = ".json"
TEMP_PREFIX = ".tmp-"
#: How many image extensions are remembered (an LRU): bounded, so memory does
#: not grow with the number of stored images.
EXTENSION_CACHE_SIZE = 4096
DAY_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
HOUR_RE = re.compile(r"^[0-9]{2}$")


def shard_names(names: list[str], pattern: re.Pattern[str]) -> list[str]:
    """The names of shard folders among ``names``, sorted oldest first.

    Other folders (``2026-13-99``, ``photos``) are not ours and are ignored.
    """
    shards = []
    for name in names:
        if not pattern.fullmatch(name):
            continue
        if pattern is DAY_RE:
            try:
                shard_start(name, "00")
            except ValueError:
                continue
        elif int(name) > 23:
            continue
        shards.append(name)
    return sorted(shards)


def is_image_id(name: str) -> bool:
    """True when ``name`` is a valid image id."""
    try:
        validate_image_id(name)
    except ValidationError:
        return False
    return True


def shard_start(day: str, hour: str) -> datetime:
    """The moment the shard ``<day>/<hour>`` starts."""
    return datetime.strptime(f"{day} {hour}", "%Y-%m-%d %H").replace(tzinfo=UTC)


class FileLayout(ImageStorage):
    """Where each file of an image lives, and the checks and moves of the tree."""

    settings: FileStorageSettings

    def __init__(
        self, settings: FileStorageSettings, *, instance_name: str = ""
    ) -> None:
        super().__init__(settings, instance_name=instance_name)
        # id -> file extension of images this process saved or read, so links and
        # paths for them need no second read of the record.
        self._extensions = ExtensionCache(EXTENSION_CACHE_SIZE)
        # (mtime of the directory, its day folders): a page needs the day list,
        # and a directory that once held a flat store of 100k images stays large
        # on ext4 after the migration, so listing it costs ~1 ms; a stat does not.
        self._days: tuple[int, list[str]] | None = None

    @property
    def directory(self) -> Path:
        """The directory images are kept in."""
        return self.settings.directory

    # -- paths -------------------------------------------------------------------

    def _shard(self, image_id: str) -> Path:
        """``<directory>/<YYYY-MM-DD>/<HH>``: the day and hour in the id."""
        image_id = validate_image_id(image_id)
        day = f"{image_id[0:4]}-{image_id[4:6]}-{image_id[6:8]}"
        return self.directory / day / image_id[9:11]

    def _record_path(self, image_id: str) -> Path:
        return self._shard(image_id) / f"{image_id}{RECORD_SUFFIX}"

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

    def _names(self, directory: Path) -> list[str]:
        try:
            return os.listdir(directory)
        except FileNotFoundError:
            return []  # a shard removed meanwhile
        except OSError as exc:
            raise StorageError(
                f"Could not list {directory}: {exc.strerror or exc}."
            ) from None

    # -- the directory -----------------------------------------------------------

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
            probe = self.directory / f"{TEMP_PREFIX}probe-{secrets.token_hex(4)}"
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
            if not dot or not is_image_id(image_id):
                continue
            if (self.directory / name).is_file():
                groups.setdefault(image_id, []).append(name)
        for image_id, names in groups.items():
            shard = self._shard(image_id)
            try:
                shard.mkdir(parents=True, exist_ok=True)
                for name in sorted(names, key=lambda n: n.endswith(RECORD_SUFFIX)):
                    os.replace(self.directory / name, shard / name)
            except OSError as exc:
                raise StorageError(
                    f"Could not move image '{image_id}' from {self.directory} into "
                    f"{shard}: {exc.strerror or exc}."
                ) from None
        if groups:
            log.info("file_storage_migrated", images=len(groups))
        return len(groups)
