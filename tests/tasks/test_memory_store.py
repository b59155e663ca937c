"""MemoryTaskStore, the store of stdio servers (and storages without one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mcp_imagegen import new_task_id
from mcp_imagegen._tasks import MemoryTaskStore
from mcp_imagegen.errors import ValidationError
from mcp_imagegen.models import TaskRecord

pytestmark = pytest.mark.anyio


def _record(owner: str | None = None, age: timedelta = timedelta(0)) -> TaskRecord:
    created = datetime.now(UTC) - age
    return TaskRecord(
        task_id=new_task_id(created),
        owner=owner,
        tool="generate_image",
        created_at=created,
        updated_at=created,
        ttl_ms=3_600_000,
        poll_interval_ms=1000,
        runner="here",
        heartbeat_at=created,
    )


async def test_records_are_copies_and_pages_follow_the_owner_newest_first() -> None:
    store = MemoryTaskStore()
    mine = [_record("ann", timedelta(seconds=s)) for s in (30, 20, 10)]
    for record in [*mine, _record("bob")]:
        await store.put(record)
    mine[0].status_message = "changed after put"

    first = await store.list("ann", limit=2)
    second = await store.list("ann", limit=2, cursor=first.next_cursor)
    stored = await store.get(mine[0].task_id)

    assert [r.task_id for r in first.items] == [mine[2].task_id, mine[1].task_id]
    assert [r.task_id for r in second.items] == [mine[0].task_id]
    assert second.next_cursor is None
    assert stored is not None and stored.status_message is None


async def test_a_bad_cursor_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="cursor"):
        await MemoryTaskStore().list(None, cursor="../nope")


async def test_expired_records_vanish_and_go_with_their_cancel_requests() -> None:
    store = MemoryTaskStore()
    old, fresh = _record(age=timedelta(hours=2)), _record()
    for record in (old, fresh):
        await store.put(record)
    await store.request_cancel(old.task_id)

    assert await store.get(old.task_id) is None
    assert await store.delete_expired(datetime.now(UTC)) == 1
    assert not await store.cancel_requested(old.task_id)
    assert await store.get(fresh.task_id) is not None
    assert not await store.cancel_requested(fresh.task_id)


def test_a_record_expires_once_its_ttl_has_run_out_naive_times_being_utc() -> None:
    record = _record()
    end = record.created_at + timedelta(hours=1)
    tick = timedelta(milliseconds=1)

    assert record.expires_at == end
    assert not record.expired(end)
    assert record.expired(end + tick)
    # A naive time is UTC (stores' sweeps may be handed one): not local time.
    assert not record.expired((end - tick).replace(tzinfo=None))
    assert record.expired((end + tick).replace(tzinfo=None))
