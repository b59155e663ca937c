"""The S3 storage's task store, against the real SeaweedFS server: the task store
contract (two storages on one bucket and prefix are two replicas), the layout,
and images and tasks keeping apart."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from mcp_imagegen import StorageError, TaskStore
from mcp_imagegen.testing import (
    TaskStoreContract,
    make_record,
    make_task_record,
    make_task_result,
    save_many,
)
from mcp_imagegen_s3 import S3Storage, S3StorageSettings
from tests.s3.seaweed import TEST_BUCKET, SeaweedServer

pytestmark = [pytest.mark.anyio, pytest.mark.s3]

Build = Callable[..., S3StorageSettings]


def keys_under(seaweed: SeaweedServer, prefix: str) -> set[str]:
    response = seaweed.client().list_objects_v2(Bucket=TEST_BUCKET, Prefix=prefix)
    return {obj["Key"] for obj in response.get("Contents", [])}


class TestS3TaskStoreContract(TaskStoreContract):
    @pytest.fixture
    async def store(self, s3_settings: Build) -> AsyncIterator[TaskStore]:
        async with S3Storage(s3_settings()) as storage:
            store = storage.task_store()
            yield store
            await store.aclose()

    @pytest.fixture
    async def replica(self, s3_settings: Build) -> AsyncIterator[TaskStore]:
        # Another process's storage: its own client, the same bucket and prefix.
        async with S3Storage(s3_settings()) as storage:
            yield storage.task_store()


async def test_records_and_cancel_marks_live_under_prefix_tasks(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    store = s3_storage.task_store()
    record = make_task_record(owner="alice")

    await store.put(record)
    await store.request_cancel(record.task_id)

    folder = f"{unique_prefix}tasks/{record.task_id}"
    assert keys_under(seaweed, unique_prefix) == {
        f"{folder}.json",
        f"{folder}.cancel",
    }
    head = seaweed.client().head_object(Bucket=TEST_BUCKET, Key=f"{folder}.json")
    # The owner is in the metadata only as a digest.
    assert "alice" not in str(head["Metadata"])


async def test_images_and_tasks_do_not_see_each_other(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    store = s3_storage.task_store()
    images = [make_record() for _ in range(3)]
    await save_many(s3_storage, images)
    tasks = [make_task_record(result=make_task_result(seed=i)) for i in range(3)]
    for task in tasks:
        await store.put(task)
    await store.request_cancel(tasks[0].task_id)
    later = datetime.now(UTC) + timedelta(days=1)

    listed = await s3_storage.list(limit=50)
    orphans = await s3_storage.remove_orphans(later)

    assert sorted(r.id for r in listed.items) == sorted(r.id for r, _ in images)
    assert orphans == 0
    assert len(keys_under(seaweed, f"{unique_prefix}tasks/")) == 4
    # Image retention deletes every image and no task; task expiry the reverse.
    assert await s3_storage.delete_expired(later) == 3
    listed_tasks = await store.list(None)
    assert [t.task_id for t in listed_tasks.items] == sorted(
        (t.task_id for t in tasks), reverse=True
    )
    await save_many(s3_storage, [make_record()])
    assert await store.delete_expired(later) == 3
    assert len((await s3_storage.list()).items) == 1
    assert keys_under(seaweed, f"{unique_prefix}tasks/") == set()


async def test_delete_expired_removes_cancel_marks_whose_task_is_gone(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    store = s3_storage.task_store()
    live = make_task_record()
    await store.put(live)
    await store.request_cancel(live.task_id)
    gone = make_task_record()
    # A delete interrupted between its two object deletes leaves the mark.
    await store.request_cancel(gone.task_id)

    assert await store.delete_expired(datetime.now(UTC)) == 0

    assert keys_under(seaweed, f"{unique_prefix}tasks/") == {
        f"{unique_prefix}tasks/{live.task_id}.json",
        f"{unique_prefix}tasks/{live.task_id}.cancel",
    }


async def test_a_record_written_without_metadata_is_still_listed_and_expired(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    store = s3_storage.task_store()
    old = make_task_record(created_at=datetime.now(UTC) - timedelta(hours=3))
    fresh = make_task_record(owner="bob")
    client = seaweed.client()
    for record in (old, fresh):  # copied by hand: no user metadata
        put = functools.partial(
            client.put_object,
            Bucket=TEST_BUCKET,
            Key=f"{unique_prefix}tasks/{record.task_id}.json",
            Body=record.model_dump_json().encode(),
        )
        await anyio.to_thread.run_sync(put)

    assert (await store.list("bob")).items == [fresh]
    assert await store.delete_expired(datetime.now(UTC)) == 1
    assert await store.get(fresh.task_id) == fresh


async def test_an_object_that_is_no_task_record_is_a_storage_error(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    store = s3_storage.task_store()
    record = make_task_record()
    key = f"{unique_prefix}tasks/{record.task_id}.json"
    put = functools.partial(
        seaweed.client().put_object, Bucket=TEST_BUCKET, Key=key, Body=b"{not json"
    )
    await anyio.to_thread.run_sync(put)

    with pytest.raises(StorageError, match="not a valid task record") as raised:
        await store.get(record.task_id)

    assert key in str(raised.value)


async def test_a_bucket_deleted_under_the_store_is_a_storage_error(
    s3_settings: Build, seaweed: SeaweedServer
) -> None:
    bucket = f"tasks-gone-{uuid.uuid4().hex[:8]}"
    client = seaweed.client()
    await anyio.to_thread.run_sync(
        functools.partial(client.create_bucket, Bucket=bucket)
    )
    async with S3Storage(s3_settings(bucket=bucket)) as storage:
        store = storage.task_store()
        record = make_task_record()
        # The fault, at the boundary: the bucket disappears while serving.
        await anyio.to_thread.run_sync(
            functools.partial(client.delete_bucket, Bucket=bucket)
        )

        with pytest.raises(StorageError, match="bucket no longer exists") as raised:
            await store.put(record)

    assert f"tasks/{record.task_id}.json" in str(raised.value)
