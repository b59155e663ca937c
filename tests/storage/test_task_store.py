"""The file storage's task store passes the task store contract, and keeps apart
from the images: listing, retention and the orphan sweep never see ``tasks/``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydantic
import pytest

from mcp_imagegen import StorageError, TaskStore, ValidationError
from mcp_imagegen.testing import (
    INVALID_TASK_IDS,
    TaskStoreContract,
    make_record,
    make_task_record,
    make_task_result,
    save_many,
)
from mcp_imagegen_file.storage import FileStorage
from mcp_imagegen_file.tasks import FileTaskStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[FileStorage]:
    settings = FileStorage.Settings(directory=tmp_path / "images")
    async with FileStorage(settings) as storage:
        yield storage


class TestFileTaskStoreContract(TaskStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[TaskStore]:
        settings = FileStorage.Settings(directory=tmp_path / "images")
        async with FileStorage(settings) as storage:
            store = storage.task_store()
            yield store
            await store.aclose()

    @pytest.fixture
    async def replica(self, tmp_path: Path) -> AsyncIterator[TaskStore]:
        # Another process's storage over the same directory.
        settings = FileStorage.Settings(directory=tmp_path / "images")
        async with FileStorage(settings) as storage:
            yield storage.task_store()


async def test_task_records_live_in_the_tasks_folder(storage: FileStorage) -> None:
    store = storage.task_store()
    record = make_task_record()

    await store.put(record)
    await store.request_cancel(record.task_id)

    folder = storage.directory / "tasks"
    assert sorted(os.listdir(folder)) == [
        f"{record.task_id}.cancel",
        f"{record.task_id}.json",
    ]


@pytest.mark.parametrize("bad_id", INVALID_TASK_IDS, ids=repr)
async def test_a_malformed_id_creates_no_file_anywhere(
    storage: FileStorage, bad_id: str
) -> None:
    store = storage.task_store()
    before = sorted(p for p in storage.directory.parent.rglob("*"))

    for call in (
        store.put(make_task_record(task_id=bad_id)),
        store.request_cancel(bad_id),
    ):
        with pytest.raises(ValidationError):
            await call

    assert sorted(p for p in storage.directory.parent.rglob("*")) == before


async def test_images_and_tasks_do_not_see_each_other(storage: FileStorage) -> None:
    store = storage.task_store()
    images = [make_record() for _ in range(3)]
    await save_many(storage, images)
    tasks = [make_task_record(result=make_task_result(seed=i)) for i in range(3)]
    for task in tasks:
        await store.put(task)
    await store.request_cancel(tasks[0].task_id)
    # A write of a task record interrupted long ago.
    leftover = storage.directory / "tasks" / f".tmp-{tasks[1].task_id}.json-0badf00d"
    leftover.write_bytes(b'{"task_id": ')

    listed = await storage.list(limit=50)
    later = datetime.now(UTC) + timedelta(seconds=1)
    orphans = await storage.remove_orphans(later)

    assert sorted(r.id for r in listed.items) == sorted(r.id for r, _ in images)
    assert orphans == 0
    assert leftover.exists(), "the image sweep reached into tasks/"
    for task in tasks:
        assert await store.get(task.task_id) == task
    assert await store.cancel_requested(tasks[0].task_id)
    # Image retention deletes every image and no task; task expiry the reverse.
    assert await storage.delete_expired(datetime.now(UTC) + timedelta(days=1)) == 3
    assert [r.task_id for r in (await store.list(None)).items] == sorted(
        (t.task_id for t in tasks), reverse=True
    )
    await save_many(storage, [make_record()])
    assert await store.delete_expired(datetime.now(UTC) + timedelta(days=1)) == 3
    assert len((await storage.list()).items) == 1


async def test_a_restarted_storage_keeps_the_task_records(tmp_path: Path) -> None:
    settings = FileStorage.Settings(directory=tmp_path / "images")
    record = make_task_record(status="completed", result=make_task_result(seed=4))
    async with FileStorage(settings) as storage:
        await storage.task_store().put(record)

    # Start-up migrates flat images and sweeps leftovers: tasks/ is left alone.
    async with FileStorage(settings) as storage:
        assert await storage.task_store().get(record.task_id) == record


async def test_delete_expired_removes_old_leftovers_only(storage: FileStorage) -> None:
    store = storage.task_store()
    live = make_task_record()
    await store.put(live)
    folder = storage.directory / "tasks"
    old_temp = folder / f".tmp-{live.task_id}.json-00000001"
    new_temp = folder / f".tmp-{live.task_id}.json-00000002"
    old_mark = folder / f"{make_task_record().task_id}.cancel"  # task gone
    for path in (old_temp, new_temp, old_mark):
        path.write_bytes(b"")
    hours_ago = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    for path in (old_temp, old_mark):
        os.utime(path, (hours_ago, hours_ago))

    assert await store.delete_expired(datetime.now(UTC)) == 0

    assert sorted(os.listdir(folder)) == sorted([f"{live.task_id}.json", new_temp.name])


async def test_a_corrupt_record_is_a_storage_error_and_is_kept(
    storage: FileStorage,
) -> None:
    store = storage.task_store()
    record = make_task_record(created_at=datetime.now(UTC) - timedelta(days=2))
    await store.put(record)
    path = storage.directory / "tasks" / f"{record.task_id}.json"
    path.write_bytes(b'{"task_id": "half a rec')

    with pytest.raises(StorageError, match="corrupt"):
        await store.get(record.task_id)
    assert await store.delete_expired(datetime.now(UTC)) == 0
    assert path.exists()


async def test_a_failing_disk_is_a_storage_error_naming_the_folder(
    tmp_path: Path,
) -> None:
    # A file where the folder should be: every write fails (ENOTDIR), even as root.
    blocked = tmp_path / "tasks"
    blocked.write_bytes(b"not a folder")
    store = FileTaskStore(blocked)
    record = make_task_record()

    with pytest.raises(StorageError, match="Could not write task record") as raised:
        await store.put(record)
    with pytest.raises(StorageError, match="Could not write task record"):
        await store.request_cancel(record.task_id)

    assert str(blocked) in str(raised.value)
    with pytest.raises(StorageError, match="Could not read task record"):
        await store.get(record.task_id)
    assert blocked.read_bytes() == b"not a folder"


def test_a_task_record_with_a_naive_time_is_refused() -> None:
    # Stores compare created_at + ttl with an aware "now": a naive time would
    # make that comparison fail later, inside a listing or a sweep.
    with pytest.raises(pydantic.ValidationError, match="timezone"):
        make_task_record(created_at=datetime(2026, 11, 30, 3, 0))
