"""File storage: directory rules, atomic writes, listing, deletion, links, ids."""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mcp
import pydantic
import pytest

from mcp_imagegen import (
    ConfigurationError,
    ImageNotFoundError,
    ImagePage,
    ImageRecord,
    InvalidImageIdError,
    StorageError,
    ValidationError,
    new_image_id,
)
from mcp_imagegen.config import Settings
from mcp_imagegen.plugins import PluginManager
from mcp_imagegen.server import build_mcp_server
from mcp_imagegen.service import ImageService
from mcp_imagegen_file import storage as storage_module
from mcp_imagegen_file.storage import FileStorage, FileStorageSettings
from tests.conftest import BAD_IMAGE_IDS, make_record, png_bytes

pytestmark = pytest.mark.anyio


def visible_files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.fixture
async def storage(image_dir: Path) -> AsyncIterator[FileStorage]:
    async with FileStorage(FileStorageSettings(directory=image_dir)) as started:
        yield started


async def save_new(storage: FileStorage, **fields: Any) -> tuple[ImageRecord, bytes]:
    data = png_bytes()
    record = make_record(data, **fields)
    await storage.save(record, data)
    return record, data


# -- directory ---------------------------------------------------------------------


def test_default_directory_is_absolute_under_xdg_data_home(
    isolated_env: Path,
) -> None:
    settings = FileStorageSettings()

    assert settings.directory == isolated_env / "data" / "mcp-imagegen" / "images"
    assert settings.directory.is_absolute()


def test_default_directory_falls_back_to_home_local_share(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_DATA_HOME")

    settings = FileStorageSettings()

    expected = isolated_env / "home" / ".local" / "share" / "mcp-imagegen" / "images"
    assert settings.directory == expected


def test_relative_xdg_data_home_is_ignored_like_the_xdg_spec_says(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", "relative-data")

    settings = FileStorageSettings()

    expected = isolated_env / "home" / ".local" / "share" / "mcp-imagegen" / "images"
    assert settings.directory == expected


def test_tilde_in_directory_is_expanded(isolated_env: Path) -> None:
    settings = FileStorageSettings.model_validate({"directory": "~/pictures"})

    assert settings.directory == isolated_env / "home" / "pictures"


def test_relative_directory_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="must be an absolute path"):
        FileStorageSettings.model_validate({"directory": "images"})


def test_relative_directory_in_config_is_an_error_naming_the_key(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    settings = make_settings({"storage": {"file": {"directory": "images"}}})

    with pytest.raises(
        ConfigurationError, match=r"storage\.file\.directory: .*absolute"
    ):
        ImageService.from_settings(settings, plugin_manager)


async def test_start_creates_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "images"

    async with FileStorage(FileStorageSettings(directory=directory)):
        assert directory.is_dir()


async def test_directory_that_cannot_be_created_is_a_clear_start_up_error(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    storage = FileStorage(FileStorageSettings(directory=blocker / "images"))

    with pytest.raises(StorageError) as caught:
        await storage.start()

    message = str(caught.value)
    assert str(blocker / "images") in message
    assert "not writable" in message
    assert "storage.file.directory" in message


async def test_unwritable_directory_fails_service_start_up(
    tmp_path: Path,
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = make_settings({"storage": {"file": {"directory": str(blocker / "x")}}})
    service = ImageService.from_settings(settings, plugin_manager)

    with pytest.raises(StorageError, match="not writable"):
        async with service:
            pass


# -- save and load -------------------------------------------------------------------


async def test_saved_image_loads_back_with_its_record(storage: FileStorage) -> None:
    record, data = await save_new(storage, seed=5, parameters={"steps": 4})

    loaded = await storage.load(record.id)

    assert loaded.data == data
    assert loaded.record == record
    assert await storage.get_record(record.id) == record


async def test_save_writes_image_and_json_sidecar_only(
    storage: FileStorage, image_dir: Path
) -> None:
    record, data = await save_new(storage)

    assert visible_files(image_dir) == [f"{record.id}.json", f"{record.id}.png"]
    assert (image_dir / f"{record.id}.png").read_bytes() == data
    assert storage.local_path(record.id) == image_dir / f"{record.id}.png"


async def test_saving_an_existing_id_again_is_refused(storage: FileStorage) -> None:
    record, data = await save_new(storage)

    with pytest.raises(StorageError, match="already exists"):
        await storage.save(record, data)


async def test_loading_an_unknown_id_is_image_not_found(storage: FileStorage) -> None:
    missing = new_image_id()

    with pytest.raises(ImageNotFoundError, match=missing):
        await storage.load(missing)


@pytest.fixture
def fail_writes_into(
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., None]:
    """Make ``os.write``/``os.fsync`` fail half way for files in one directory.

    Only file descriptors of temporary files under ``directory`` whose name
    contains ``marker`` are affected, so the rest of the process is untouched.
    """

    def install(directory: Path, *, call: str, marker: str = "") -> None:
        real_write, real_fsync = os.write, os.fsync

        def targeted(fd: int) -> bool:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                return False
            name = os.path.basename(target)
            return (
                target.startswith(str(directory))
                and name.startswith(".tmp-")
                and marker in name
            )

        def write(fd: int, data: Any) -> int:
            if call == "write" and targeted(fd):
                if os.fstat(fd).st_size == 0:
                    return real_write(fd, bytes(data)[: max(1, len(data) // 2)])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            if call == "fsync" and targeted(fd):
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_fsync(fd)

        monkeypatch.setattr(storage_module.os, "write", write)
        monkeypatch.setattr(storage_module.os, "fsync", fsync)

    return install


@pytest.mark.parametrize(
    ("call", "marker", "reason"),
    [
        ("write", ".png", "No space left on device"),
        ("fsync", ".png", "Input/output error"),
        ("write", ".json", "No space left on device"),
    ],
    ids=["image-write", "image-fsync", "record-write"],
)
async def test_write_failing_half_way_leaves_no_partial_file_and_keeps_earlier_images(
    call: str,
    marker: str,
    reason: str,
    storage: FileStorage,
    image_dir: Path,
    fail_writes_into: Callable[..., None],
) -> None:
    earlier, earlier_data = await save_new(storage)
    files_before = visible_files(image_dir)
    fail_writes_into(image_dir, call=call, marker=marker)
    data = png_bytes((200, 0, 0), size=64)
    record = make_record(data)

    with pytest.raises(StorageError) as caught:
        await storage.save(record, data)

    assert reason in str(caught.value)
    assert record.id in str(caught.value)
    assert visible_files(image_dir) == files_before
    assert (await storage.load(earlier.id)).data == earlier_data
    assert [r.id for r in (await storage.list()).items] == [earlier.id]
    with pytest.raises(ImageNotFoundError):
        await storage.load(record.id)


# -- listing -------------------------------------------------------------------------


@pytest.fixture
async def five_images(storage: FileStorage) -> list[ImageRecord]:
    """Five images created one minute apart, returned oldest first."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    records = []
    for minute in range(5):
        record, _ = await save_new(
            storage, image_id=new_image_id(start + timedelta(minutes=minute))
        )
        records.append(record)
    return records


async def test_list_returns_newest_first(
    storage: FileStorage, five_images: list[ImageRecord]
) -> None:
    page = await storage.list(limit=10)

    assert [r.id for r in page.items] == [r.id for r in reversed(five_images)]
    assert page.next_cursor is None


async def test_list_pages_through_every_image_with_the_cursor(
    storage: FileStorage, five_images: list[ImageRecord]
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await storage.list(limit=2, cursor=cursor)
        pages += 1
        seen += [r.id for r in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break

    assert pages == 3
    assert seen == [r.id for r in reversed(five_images)]


async def test_cursor_is_opaque(
    storage: FileStorage, five_images: list[ImageRecord]
) -> None:
    page = await storage.list(limit=2)

    assert page.next_cursor is not None
    assert page.items[-1].id not in page.next_cursor


@pytest.mark.parametrize("cursor", ["garbage", "Li4vZXRj", "%%%"])
async def test_invalid_cursor_is_a_validation_error(
    storage: FileStorage, cursor: str
) -> None:
    with pytest.raises(ValidationError, match="Invalid cursor"):
        await storage.list(cursor=cursor)


async def test_list_ignores_temporary_and_foreign_files(
    storage: FileStorage, image_dir: Path
) -> None:
    record, _ = await save_new(storage)
    (image_dir / f".tmp-{new_image_id()}.json-abcd").write_text("{}")
    (image_dir / "notes.json").write_text("{}")

    page = await storage.list()

    assert [r.id for r in page.items] == [record.id]


# -- deletion ------------------------------------------------------------------------


async def test_delete_removes_the_image_and_its_record(
    storage: FileStorage, image_dir: Path
) -> None:
    record, _ = await save_new(storage)

    await storage.delete(record.id)

    assert visible_files(image_dir) == []
    with pytest.raises(ImageNotFoundError):
        await storage.get_record(record.id)


async def test_deleting_an_unknown_id_is_image_not_found(storage: FileStorage) -> None:
    with pytest.raises(ImageNotFoundError):
        await storage.delete(new_image_id())


async def test_delete_expired_deletes_only_images_older_than_the_cutoff(
    storage: FileStorage,
) -> None:
    now = datetime.now(UTC)
    old = [
        (await save_new(storage, image_id=new_image_id(now - timedelta(days=d))))[0]
        for d in (3, 2)
    ]
    fresh, _ = await save_new(storage)

    deleted = await storage.delete_expired(now - timedelta(days=1))

    assert deleted == 2
    assert [r.id for r in (await storage.list()).items] == [fresh.id]
    for record in old:
        with pytest.raises(ImageNotFoundError):
            await storage.load(record.id)


# -- links ---------------------------------------------------------------------------


async def test_url_for_without_base_url_is_a_file_uri(
    storage: FileStorage, image_dir: Path
) -> None:
    record, _ = await save_new(storage)

    url = await storage.url_for(record.id)

    assert url == (image_dir / f"{record.id}.png").as_uri()
    assert url.startswith("file:///")


async def test_url_for_with_base_url_joins_base_and_file_name(image_dir: Path) -> None:
    settings = FileStorageSettings(
        directory=image_dir, base_url="https://img.example.com/generated/"
    )
    async with FileStorage(settings) as storage:
        record, _ = await save_new(storage)

        url = await storage.url_for(record.id)

    assert url == f"https://img.example.com/generated/{record.id}.png"


async def test_url_for_uses_the_extension_of_the_stored_format(
    storage: FileStorage,
) -> None:
    data = png_bytes()
    record = make_record(data, mime_type="image/jpeg")
    await storage.save(record, data)

    assert (await storage.url_for(record.id)).endswith(f"{record.id}.jpg")


# -- invalid ids ---------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", BAD_IMAGE_IDS)
@pytest.mark.parametrize("operation", ["load", "get_record", "delete", "url_for"])
async def test_invalid_image_id_is_rejected_by_every_storage_operation(
    operation: str, bad_id: str, storage: FileStorage, image_dir: Path
) -> None:
    with pytest.raises(InvalidImageIdError) as caught:
        await getattr(storage, operation)(bad_id)

    assert len(str(caught.value)) < 200
    assert "\x00" not in str(caught.value)


@pytest.mark.parametrize("bad_id", BAD_IMAGE_IDS)
async def test_saving_a_record_with_an_invalid_id_is_refused(
    bad_id: str, storage: FileStorage, image_dir: Path
) -> None:
    data = png_bytes()

    with pytest.raises(InvalidImageIdError):
        await storage.save(make_record(data, image_id=bad_id), data)

    assert visible_files(image_dir) == []


# -- listing while other calls delete (issue 8, item 1) -------------------------------


class DeletesAfterListing(FileStorage):
    """A file storage where another caller deletes an image right after a listing.

    The delete is injected at the storage boundary: ``list`` returns its page and
    then, before the caller can use it, the newest listed image is deleted, as a
    concurrent ``delete_image`` call would.
    """

    async def list(self, limit: int = 20, cursor: str | None = None) -> ImagePage:
        page = await super().list(limit, cursor)
        if page.items:
            await self.delete(page.items[0].id)
        return page


async def test_list_images_tool_survives_a_delete_of_an_image_it_just_listed(
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
    image_dir: Path,
) -> None:
    service = ImageService.from_settings(make_settings(), plugin_manager)
    service.storage = DeletesAfterListing(FileStorageSettings(directory=image_dir))
    server = build_mcp_server(service)
    async with mcp.Client(server) as client:
        saved = [(await save_new(service.storage))[0] for _ in range(3)]

        result = await client.call_tool("list_images", {"limit": 10})

    assert not result.is_error, result
    assert result.structured_content is not None
    listed = [image["id"] for image in result.structured_content["images"]]
    # The newest image was deleted after the page was read: it is simply absent.
    assert listed == [saved[1].id, saved[0].id]
