"""Local (or PVC-mounted) file storage.

Layout: ``<directory>/<id>.<ext>`` holds the image and ``<directory>/<id>.json`` its
record. The record is written last and removed first, so it is the marker that an
image exists: listings and loads only see images whose record is in place.
Every file is written to a hidden temporary name, fsynced and renamed, so no
reader ever sees a partial file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

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
_EXTENSION_CACHE_SIZE = 4096


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
    """Stores images as files in one directory."""

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

    def _remember(self, record: ImageRecord) -> None:
        self._extensions[record.id] = record.extension
        self._extensions.move_to_end(record.id)
        if len(self._extensions) > _EXTENSION_CACHE_SIZE:
            self._extensions.popitem(last=False)

    async def start(self) -> None:
        """Create the directory and prove it is writable.

        Raises:
            StorageError: naming the directory and the OS error.
        """
        await anyio.to_thread.run_sync(self._check_writable)
        log.debug("file_storage_ready", directory=str(self.directory))

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

    # -- paths -------------------------------------------------------------------

    def _record_path(self, image_id: str) -> Path:
        return self.directory / f"{validate_image_id(image_id)}{_RECORD_SUFFIX}"

    def _image_path(self, record: ImageRecord) -> Path:
        return self.directory / f"{validate_image_id(record.id)}.{record.extension}"

    def local_path(self, image_id: str) -> Path | None:
        """Return the image file's path (the record names the extension)."""
        extension = self._extensions.get(validate_image_id(image_id))
        if extension is not None:
            return self.directory / f"{image_id}.{extension}"
        record_path = self._record_path(image_id)
        try:
            record = ImageRecord.model_validate_json(record_path.read_bytes())
        except (OSError, ValueError):
            return None
        return self._image_path(record)

    # -- writes ------------------------------------------------------------------

    async def save(self, record: ImageRecord, data: bytes) -> None:
        """Write the image, then its record, each atomically."""
        validate_image_id(record.id)
        await anyio.to_thread.run_sync(self._save_sync, record, data)
        self._remember(record)

    def _save_sync(self, record: ImageRecord, data: bytes) -> None:
        image_path = self._image_path(record)
        record_path = self._record_path(record.id)
        if record_path.exists():
            raise StorageError(f"An image with id '{record.id}' already exists.")
        try:
            _write_atomic(image_path, data)
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
        await anyio.to_thread.run_sync(self._delete_sync, record)

    def _delete_sync(self, record: ImageRecord) -> None:
        try:
            self._record_path(record.id).unlink()
        except FileNotFoundError:
            raise ImageNotFoundError(record.id) from None
        except OSError as exc:
            raise StorageError(
                f"Could not delete image '{record.id}': {exc.strerror or exc}."
            ) from None
        with contextlib.suppress(FileNotFoundError):
            self._image_path(record).unlink()

    async def delete_expired(self, older_than: datetime) -> int:
        """Delete images whose id says they were created before ``older_than``.

        A naive ``older_than`` is taken as UTC.
        """
        if older_than.tzinfo is None:
            older_than = older_than.replace(tzinfo=UTC)
        expired = [
            image_id
            for image_id in await anyio.to_thread.run_sync(self._ids)
            if image_id_time(image_id) < older_than
        ]
        deleted = 0
        for image_id in expired:
            try:
                await self.delete(image_id)
                deleted += 1
            except ImageNotFoundError:
                continue  # deleted concurrently
        return deleted

    # -- reads -------------------------------------------------------------------

    async def get_record(self, image_id: str) -> ImageRecord:
        """Read and parse ``<id>.json``."""
        path = self._record_path(image_id)
        record = await anyio.to_thread.run_sync(self._read_record, path, image_id)
        self._remember(record)
        return record

    def _read_record(self, path: Path, image_id: str) -> ImageRecord:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ImageNotFoundError(image_id) from None
        except OSError as exc:
            raise StorageError(
                f"Could not read image '{image_id}': {exc.strerror or exc}."
            ) from None
        try:
            return ImageRecord.model_validate_json(raw)
        except ValueError:
            raise StorageError(
                f"The metadata of image '{image_id}' is corrupt."
            ) from None

    async def load(self, image_id: str) -> StoredImage:
        """Read the record and the image bytes."""
        record = await self.get_record(image_id)
        path = self._image_path(record)
        data = await anyio.to_thread.run_sync(self._read_image, path, record)
        return StoredImage(record=record, data=data)

    def _read_image(self, path: Path, record: ImageRecord) -> bytes:
        try:
            with path.open("rb") as handle:
                data = handle.read(self.settings.max_load_bytes + 1)
        except FileNotFoundError:
            raise ImageNotFoundError(record.id) from None
        except OSError as exc:
            raise StorageError(
                f"Could not read image '{record.id}': {exc.strerror or exc}."
            ) from None
        if len(data) > self.settings.max_load_bytes:
            raise StorageError(
                f"Image '{record.id}' is larger than storage.file.max_load_bytes "
                f"({self.settings.max_load_bytes} bytes)."
            )
        return data

    def _ids(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except OSError as exc:
            raise StorageError(
                f"Could not list {self.directory}: {exc.strerror or exc}."
            ) from None
        ids = []
        for name in names:
            if name.endswith(_RECORD_SUFFIX) and not name.startswith("."):
                image_id = name[: -len(_RECORD_SUFFIX)]
                with contextlib.suppress(ValidationError):
                    ids.append(validate_image_id(image_id))
        ids.sort(reverse=True)
        return ids

    async def list(self, limit: int = 20, cursor: str | None = None) -> ImagePage:
        """List records newest first; the cursor encodes the last id returned."""
        if limit < 1:
            raise ValidationError(f"limit {limit} is out of range: use 1 or more.")
        after = decode_cursor(cursor) if cursor else None
        ids = await anyio.to_thread.run_sync(self._ids)
        if after is not None:
            ids = [i for i in ids if i < after]
        items: list[ImageRecord] = []
        for image_id in ids:
            if len(items) == limit:
                # Records deleted meanwhile are skipped, so only now is it known
                # whether another page exists.
                return ImagePage(items=items, next_cursor=encode_cursor(items[-1].id))
            try:
                items.append(await self.get_record(image_id))
            except ImageNotFoundError:
                continue  # deleted while listing
        return ImagePage(items=items)

    async def url_for(self, image_id: str) -> str:
        """``base_url`` link when configured, else a ``file://`` URI."""
        extension = self._extensions.get(validate_image_id(image_id))
        if extension is None:
            extension = (await self.get_record(image_id)).extension
        if self.settings.base_url:
            return f"{self.settings.base_url}/{image_id}.{extension}"
        return (self.directory / f"{image_id}.{extension}").as_uri()


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
