"""File storage: directory rules, atomic writes, listing, deletion, links, ids."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
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
    validate_image_id,
)
from mcp_imagegen._app import build_service
from mcp_imagegen._config import Settings
from mcp_imagegen._mcp import build_mcp_server
from mcp_imagegen._plugins import PluginManager
from mcp_imagegen_file.storage import FileStorage, FileStorageSettings
from tests.conftest import BAD_IMAGE_IDS, make_record, png_bytes

pytestmark = pytest.mark.anyio


def visible_files(directory: Path) -> list[str]:
    """Every file under ``directory`` (shard folders included), as relative paths."""
    return sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.is_file()
    )


def shard_of(image_id: str) -> str:
    """``YYYY-MM-DD/HH``: the folder an image is kept in."""
    return f"{image_id[0:4]}-{image_id[4:6]}-{image_id[6:8]}/{image_id[9:11]}"


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
        build_service(settings, plugin_manager)


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
    service = build_service(settings, plugin_manager)

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

    shard = shard_of(record.id)
    assert visible_files(image_dir) == [
        f"{shard}/{record.id}.json",
        f"{shard}/{record.id}.png",
    ]
    assert (image_dir / shard / f"{record.id}.png").read_bytes() == data
    assert storage.local_path(record.id) == image_dir / shard / f"{record.id}.png"


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

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)

    return install


@pytest.mark.parametrize(
    ("call", "marker", "reason"),
    [
        ("write", ".png", "No space left on device"),
        ("fsync", ".png", "Input/output error"),
        ("write", ".json", "No space left on device"),
        ("fsync", ".json", "Input/output error"),
    ],
    ids=["image-write", "image-fsync", "record-write", "record-fsync"],
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


def record_renames(monkeypatch: pytest.MonkeyPatch, events: list[str]) -> None:
    """Append ``"rename <extension>"`` to ``events`` for every ``os.replace``."""
    real_replace = os.replace

    def replace(src: Any, dst: Any) -> None:
        events.append("rename " + os.path.basename(dst).split(".")[-1])
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


async def test_both_files_are_fsynced_together_before_either_is_renamed_image_first(
    storage: FileStorage, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two fsyncs in flight at once share one journal commit (measured: a save's
    # two sequential fsyncs cost ~7 ms on a busy disk, overlapped ~0.8 ms). The
    # barrier lets each fsync through only once the other one is under way too;
    # its timeout bounds the wait if they ran one after the other.
    barrier = threading.Barrier(2, timeout=10)
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.startswith(".tmp-"):
            barrier.wait()
            events.append("fsync " + name.split(".")[-1].split("-")[0])
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    record_renames(monkeypatch, events)
    data = png_bytes()
    record = make_record(data)

    await storage.save(record, data)

    assert sorted(events[:2]) == ["fsync json", "fsync png"]
    assert events[2:] == ["rename png", "rename json"]
    assert (await storage.load(record.id)).data == data
    assert not [f for f in visible_files(image_dir) if ".tmp-" in f]


async def test_a_save_fsyncs_the_folders_that_got_new_names_after_renaming(
    storage: FileStorage, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fsync of a file makes its data durable, not its name: after a power loss,
    # a file renamed into a folder never fsynced may be gone. A new image's
    # shard folder gets fsynced after both renames; the first image of an hour
    # also makes its hour (and day) folder's own names durable.
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if target.is_dir():
            events.append(f"fsync {target.relative_to(image_dir.parent).as_posix()}")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    record_renames(monkeypatch, events)
    first = make_record(png_bytes(), image_id=new_image_id(datetime(2026, 3, 1, 9)))
    second = make_record(png_bytes(), image_id=new_image_id(datetime(2026, 3, 1, 9)))

    await storage.save(first, png_bytes())
    first_events, events[:] = list(events), []
    await storage.save(second, png_bytes())

    root = image_dir.name
    day = f"{root}/2026-03-01"
    hour = f"{day}/09"
    assert first_events == [
        f"fsync {day}",
        f"fsync {root}",
        "rename png",
        "rename json",
        f"fsync {hour}",
    ]
    assert events == ["rename png", "rename json", f"fsync {hour}"]
    assert (await storage.load(second.id)).data == png_bytes()


@pytest.mark.parametrize(
    ("error", "saved"),
    [(errno.EINVAL, True), (errno.EIO, False)],
    ids=["folder-fsync-unsupported", "folder-fsync-io-error"],
)
async def test_a_folder_fsync_the_file_system_cannot_do_is_skipped_an_io_error_fails(
    storage: FileStorage,
    image_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: int,
    saved: bool,
) -> None:
    # Some FUSE and network file systems answer EINVAL to fsync on a folder:
    # saves must still work there. A real I/O error (here after both renames,
    # in a folder an earlier save made) fails the save, which then leaves
    # nothing of it behind.
    earlier, earlier_data = await save_new(storage)
    files_before = visible_files(image_dir)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).is_dir():
            raise OSError(error, os.strerror(error))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    data = png_bytes()
    record = make_record(data)

    if saved:
        await storage.save(record, data)
        assert (await storage.load(record.id)).data == data
    else:
        with pytest.raises(StorageError, match=os.strerror(errno.EIO)):
            await storage.save(record, data)
        assert visible_files(image_dir) == files_before
        with pytest.raises(ImageNotFoundError):
            await storage.load(record.id)
    assert (await storage.load(earlier.id)).data == earlier_data


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
    shard = image_dir / shard_of(record.id)
    for folder in (image_dir, shard):
        (folder / f".tmp-{new_image_id()}.json-abcd").write_text("{}")
        (folder / "notes.json").write_text("{}")
    (image_dir / "photos").mkdir()
    (image_dir / "2026-13-99").mkdir()

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

    assert url == (image_dir / shard_of(record.id) / f"{record.id}.png").as_uri()
    assert url.startswith("file:///")


async def test_url_for_with_base_url_joins_base_and_file_name(image_dir: Path) -> None:
    settings = FileStorageSettings(
        directory=image_dir, base_url="https://img.example.com/generated/"
    )
    async with FileStorage(settings) as storage:
        record, _ = await save_new(storage)

        url = await storage.url_for(record.id)

    assert url == (
        f"https://img.example.com/generated/{shard_of(record.id)}/{record.id}.png"
    )


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
    service = build_service(make_settings(), plugin_manager)
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


class DeletesBetweenListingAndReads(FileStorage):
    """Another process removes every other record of a shard right after the
    shard was listed and before its records are read: the window in which a
    concurrent delete hits a listing."""

    async def _shard_ids(self, shard: Path) -> list[str]:
        ids = await super()._shard_ids(shard)
        for image_id in ids[::2]:
            await anyio.Path(shard / f"{image_id}.json").unlink()
        return ids


async def test_list_skips_images_deleted_between_listing_and_record_reads(
    image_dir: Path,
) -> None:
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    async with DeletesBetweenListingAndReads(
        FileStorageSettings(directory=image_dir)
    ) as storage:
        saved = [
            (
                await save_new(
                    storage, image_id=new_image_id(start + timedelta(seconds=i))
                )
            )[0]
            for i in range(6)
        ]

        page = await storage.list(limit=10)

    assert [r.id for r in page.items] == [saved[5].id, saved[3].id, saved[1].id]
    assert page.next_cursor is None


# -- layout: shards by day and hour (issue 8, item 11) -------------------------------


async def test_images_are_kept_in_a_folder_per_day_and_hour(
    storage: FileStorage, image_dir: Path
) -> None:
    image_id = new_image_id(datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC))
    record, _ = await save_new(storage, image_id=image_id)

    assert visible_files(image_dir) == [
        f"2026-02-03/04/{record.id}.json",
        f"2026-02-03/04/{record.id}.png",
    ]


class CountsShardReads(FileStorage):
    """Counts which shards a listing reads (the cost of a page)."""

    def __init__(self, settings: FileStorageSettings) -> None:
        super().__init__(settings)
        self.shards_read: list[str] = []

    async def _shard_ids(self, shard: Path) -> list[str]:
        self.shards_read.append(f"{shard.parent.name}/{shard.name}")
        return await super()._shard_ids(shard)


async def test_a_page_reads_only_the_shards_it_needs(image_dir: Path) -> None:
    start = datetime(2026, 4, 1, tzinfo=UTC)
    async with CountsShardReads(FileStorageSettings(directory=image_dir)) as storage:
        # 30 hours of images, 4 an hour: a store of 30 shards.
        for hour in range(30):
            for minute in range(4):
                moment = start + timedelta(hours=hour, minutes=minute)
                await save_new(storage, image_id=new_image_id(moment))

        first = await storage.list(limit=3)
        first_reads = list(storage.shards_read)
        storage.shards_read.clear()
        second = await storage.list(limit=3, cursor=first.next_cursor)

    # The newest shard holds the first page (plus one id to know a next exists).
    assert first_reads == ["2026-04-02/05"]
    # The next page starts at the cursor's shard; newer shards are not read.
    assert storage.shards_read == ["2026-04-02/05", "2026-04-02/04"]
    assert [r.id[:13] for r in second.items] == [
        "20260402T0500",
        "20260402T0403",
        "20260402T0402",
    ]


async def test_pages_cross_shards_and_days_newest_first(image_dir: Path) -> None:
    start = datetime(2026, 4, 1, 22, tzinfo=UTC)
    async with FileStorage(FileStorageSettings(directory=image_dir)) as storage:
        ids = [
            (
                await save_new(
                    storage, image_id=new_image_id(start + timedelta(minutes=37 * i))
                )
            )[0].id
            for i in range(9)
        ]
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(10):
            page = await storage.list(limit=2, cursor=cursor)
            seen += [r.id for r in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break

    assert seen == ids[::-1]


def write_flat_image(directory: Path, record: ImageRecord, data: bytes) -> None:
    """Store an image the way versions before the shards did: ``<dir>/<id>.*``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{record.id}.{record.extension}").write_bytes(data)
    (directory / f"{record.id}.json").write_text(record.model_dump_json())


async def test_images_of_the_flat_layout_are_moved_into_shards_at_start_up(
    image_dir: Path,
) -> None:
    old = [
        make_record(
            png_bytes((i, 0, 0)),
            image_id=new_image_id(datetime(2025, 1, i + 1, tzinfo=UTC)),
        )
        for i in range(3)
    ]
    for record in old:
        write_flat_image(image_dir, record, png_bytes((old.index(record), 0, 0)))
    # A migration interrupted after moving an image but before its record:
    half = old[2]
    shard = image_dir / shard_of(half.id)
    shard.mkdir(parents=True)
    os.replace(image_dir / f"{half.id}.png", shard / f"{half.id}.png")
    (image_dir / "notes.txt").write_text("not ours")

    async with FileStorage(FileStorageSettings(directory=image_dir)) as storage:
        page = await storage.list()
        loaded = [await storage.load(r.id) for r in old]

    assert [r.id for r in page.items] == [r.id for r in reversed(old)]
    assert [s.data for s in loaded] == [png_bytes((i, 0, 0)) for i in range(3)]
    assert visible_files(image_dir) == sorted(
        ["notes.txt"]
        + [f"{shard_of(r.id)}/{r.id}.{ext}" for r in old for ext in ("json", "png")]
    )


# -- leftovers of interrupted saves (issue 8, item 8) --------------------------------


def age(path: Path, delta: timedelta) -> Path:
    """Set ``path``'s modification time ``delta`` into the past."""
    stamp = (datetime.now(UTC) - delta).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def plant_leftovers(image_dir: Path, image_id: str) -> list[Path]:
    """What saves killed half way leave: temp files and an image without record."""
    shard = image_dir / shard_of(image_id)
    shard.mkdir(parents=True, exist_ok=True)
    paths = [
        shard / f".tmp-{image_id}.png-0badf00d",
        shard / f".tmp-{image_id}.json-0badf00d",
        shard / f"{image_id}.png",
        image_dir / f".tmp-probe-{image_id[-8:]}",
    ]
    for path in paths:
        path.write_bytes(b"partial")
    return paths


async def test_remove_orphans_removes_old_leftovers_and_keeps_complete_images(
    storage: FileStorage, image_dir: Path
) -> None:
    complete, data = await save_new(storage)
    for name in visible_files(image_dir):
        age(image_dir / name, timedelta(hours=3))  # complete images of any age are kept
    old = [
        age(p, timedelta(hours=2)) for p in plant_leftovers(image_dir, new_image_id())
    ]
    young = plant_leftovers(image_dir, new_image_id())[:3]
    (image_dir / "2026-13-99").mkdir()  # not a shard: ignored

    removed = await storage.remove_orphans(datetime.now(UTC) - timedelta(hours=1))

    assert removed == len(old)
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in young)
    assert (await storage.load(complete.id)).data == data
    assert await storage.remove_orphans(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert (await storage.list()).items == [complete]


async def test_remove_orphans_removes_empty_shards_of_past_hours(
    storage: FileStorage, image_dir: Path
) -> None:
    gone, _ = await save_new(
        storage, image_id=new_image_id(datetime(2025, 5, 5, tzinfo=UTC))
    )
    kept, _ = await save_new(
        storage, image_id=new_image_id(datetime(2025, 5, 6, tzinfo=UTC))
    )
    await storage.delete(gone.id)

    assert await storage.remove_orphans(datetime.now(UTC)) == 0

    assert sorted(os.listdir(image_dir)) == ["2025-05-06"]
    assert [r.id for r in (await storage.list()).items] == [kept.id]
    again, _ = await save_new(
        storage, image_id=new_image_id(datetime(2025, 5, 5, 0, 1, tzinfo=UTC))
    )
    assert (await storage.get_record(again.id)) == again


async def test_a_save_into_the_shard_a_sweep_just_removed_makes_it_again(
    storage: FileStorage, image_dir: Path
) -> None:
    # The storage skips the mkdir for the shard its last save used; the sweep
    # removing that very shard must not make the next save into it fail.
    hour = datetime(2025, 5, 5, 7, tzinfo=UTC)
    first, _ = await save_new(storage, image_id=new_image_id(hour))
    await storage.delete(first.id)
    await storage.remove_orphans(datetime.now(UTC))
    assert os.listdir(image_dir) == []

    again, _ = await save_new(
        storage, image_id=new_image_id(hour + timedelta(minutes=1))
    )

    assert (await storage.get_record(again.id)) == again
    assert (await storage.load(again.id)).record == again


async def test_start_up_removes_leftovers_older_than_an_hour(image_dir: Path) -> None:
    old = [
        age(p, timedelta(minutes=61))
        for p in plant_leftovers(image_dir, new_image_id())
    ]
    young = [
        age(p, timedelta(minutes=50))
        for p in plant_leftovers(image_dir, new_image_id())[:3]
    ]

    async with FileStorage(FileStorageSettings(directory=image_dir)):
        pass

    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in young)


# -- bounded memory (issue 8, item 10) ------------------------------------------------


async def test_extension_cache_stays_bounded_however_many_images_pass(
    storage: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage._extensions, "maxsize", 8)
    records = [(await save_new(storage))[0] for _ in range(30)]
    for record in records:
        await storage.get_record(record.id)
        assert await storage.url_for(record.id)

    assert len(storage._extensions) == 8
    # The most recently used are the ones remembered; the others still resolve.
    assert list(storage._extensions) == [r.id for r in records[-8:]]
    assert storage.local_path(records[0].id) == (
        storage.directory / shard_of(records[0].id) / f"{records[0].id}.png"
    )


SAVE_IN_A_LOOP = """
import os, sys
import anyio
from mcp_imagegen import new_image_id
from mcp_imagegen.testing import make_record
from mcp_imagegen_file.storage import FileStorage

async def main() -> None:
    # One 8 MB image saved under new ids: the loop's time is all in save().
    template, data = make_record(os.urandom(8 * 1024 * 1024))
    settings = FileStorage.Settings(directory=sys.argv[1])
    async with FileStorage(settings) as storage:
        for i in range(2000):  # bounded: the parent kills it long before
            record = template.model_copy(update={"id": new_image_id()})
            await storage.save(record, data)
            print(record.id, flush=True)

anyio.run(main)
"""


def is_image_id(word: str) -> bool:
    try:
        validate_image_id(word)
    except ValidationError:
        return False
    return True


def leftovers(image_dir: Path) -> list[str]:
    """Temp files and images whose record is missing."""
    files = visible_files(image_dir)
    return [
        name
        for name in files
        if Path(name).name.startswith(".tmp-")
        or (
            not name.endswith(".json") and f"{name.rsplit('.', 1)[0]}.json" not in files
        )
    ]


async def test_kill_9_during_saves_leaves_only_leftovers_the_sweep_removes(
    image_dir: Path,
) -> None:
    saved: list[str] = []
    planted = 0
    for _round in range(5):  # a kill lands mid-save nearly always; 5 to be sure
        async with await anyio.open_process(
            [sys.executable, "-c", SAVE_IN_A_LOOP, str(image_dir)],
            stderr=subprocess.DEVNULL,
        ) as child:
            assert child.stdout is not None
            buffered = b""
            async for chunk in child.stdout:
                buffered += chunk
                if buffered.count(b"\n") >= 3:
                    break
            # Somewhere inside the next save (an 8 MB save takes ~10 ms here).
            await anyio.sleep(random.uniform(0.001, 0.008))
            child.send_signal(signal.SIGKILL)
            await child.wait()
        # Lines that are ids are saves that completed (the rest are log lines).
        saved += [w for w in buffered.decode().split() if is_image_id(w)]
        found = leftovers(image_dir)
        planted += len(found)
        if planted:
            break
    assert planted, "no kill interrupted a save in 5 rounds"

    async with FileStorage(FileStorageSettings(directory=image_dir)) as storage:
        # Start-up keeps them (younger than an hour); the retention sweep does not.
        assert len(leftovers(image_dir)) == planted
        removed = await storage.remove_orphans(datetime.now(UTC) + timedelta(seconds=1))
        listed = await list_all(storage)
        for record in listed:
            loaded = await storage.load(record.id)
            assert hashlib.sha256(loaded.data).hexdigest() == record.sha256

    assert removed == planted
    assert leftovers(image_dir) == []
    # Every save that reported success is complete; at most one more per round
    # (killed after its rename, before it could say so).
    listed_ids = {r.id for r in listed}
    assert set(saved) <= listed_ids
    assert len(listed_ids) - len(saved) <= 5


async def list_all(storage: FileStorage) -> list[ImageRecord]:
    records: list[ImageRecord] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await storage.list(limit=100, cursor=cursor)
        records += page.items
        cursor = page.next_cursor
        if cursor is None:
            return records
    raise AssertionError("list() keeps returning a next_cursor")


class CountsRootListings(FileStorage):
    def __init__(self, settings: FileStorageSettings) -> None:
        super().__init__(settings)
        self.root_listings = 0

    async def _subdirs(self, directory: Path, pattern: Any) -> list[str]:
        self.root_listings += directory == self.directory
        return await super()._subdirs(directory, pattern)


async def test_day_folders_are_listed_again_only_when_the_directory_changed(
    image_dir: Path,
) -> None:
    async with CountsRootListings(FileStorageSettings(directory=image_dir)) as storage:
        first, _ = await save_new(
            storage, image_id=new_image_id(datetime(2026, 5, 1, tzinfo=UTC))
        )
        age(image_dir, timedelta(minutes=5))  # settled: its listing can be trusted
        assert [r.id for r in (await storage.list()).items] == [first.id]
        assert [r.id for r in (await storage.list()).items] == [first.id]
        assert storage.root_listings == 1  # a directory once flat and huge costs ~1 ms

        # Another process adds a day: the directory's mtime moves, it is re-read.
        second, _ = await save_new(
            storage, image_id=new_image_id(datetime(2026, 5, 2, tzinfo=UTC))
        )
        assert [r.id for r in (await storage.list()).items] == [second.id, first.id]
        assert storage.root_listings == 2
