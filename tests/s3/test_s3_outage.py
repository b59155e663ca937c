"""The S3 server going away in the middle of a run, and coming back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from mcp_imagegen import ImageNotFoundError, StorageError
from mcp_imagegen.testing import make_record
from mcp_imagegen_s3 import S3Storage, S3StorageSettings
from tests.s3.proxy import Action, FaultyProxy
from tests.s3.seaweed import TEST_BUCKET, SeaweedServer

pytestmark = [pytest.mark.anyio, pytest.mark.s3]


@pytest.fixture(scope="module")
def own_seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A server of this module's own, so stopping it leaves the shared one alone."""
    directory = tmp_path_factory.mktemp("seaweed-outage")
    with SeaweedServer(directory, buckets=(TEST_BUCKET,)) as server:
        yield server


async def test_calls_fail_clearly_while_the_server_is_down_and_work_once_it_is_back(
    own_seaweed: SeaweedServer,
) -> None:
    table = own_seaweed.storage_table(
        prefix=f"outage-{uuid.uuid4().hex[:8]}", max_attempts=2, connect_timeout="PT2S"
    )
    async with S3Storage(S3StorageSettings.model_validate(table)) as storage:
        before, before_data = make_record()
        await storage.save(before, before_data)

        own_seaweed.stop()
        try:
            with pytest.raises(StorageError) as raised:
                await storage.load(before.id)
            during, during_data = make_record()
            with pytest.raises(StorageError):
                await storage.save(during, during_data)
        finally:
            own_seaweed.start()

        after, after_data = make_record()
        await storage.save(after, after_data)
        loaded = await storage.load(before.id)
        listed = await storage.list()

    message = str(raised.value)
    assert not isinstance(raised.value, ImageNotFoundError)
    assert own_seaweed.endpoint in message
    assert "EndpointConnectionError" in message
    assert loaded.data == before_data
    assert [r.id for r in listed.items] == sorted([after.id, before.id], reverse=True)


async def test_a_save_cut_off_by_an_outage_leaves_an_orphan_the_sweep_removes(
    own_seaweed: SeaweedServer,
) -> None:
    cut, cut_data = make_record()

    def hold_record_puts(method: str, path: str) -> Action:
        held = method == "PUT" and path.endswith(f"{cut.id}.json")
        return "hold" if held else "pass"

    prefix = f"orphans-{uuid.uuid4().hex[:8]}/"
    async with FaultyProxy(own_seaweed.endpoint, hold_record_puts) as proxy:
        table = own_seaweed.storage_table(
            prefix=prefix,
            endpoint_url=proxy.endpoint,
            max_attempts=2,
            connect_timeout="PT2S",
            read_timeout="PT10S",
        )
        async with S3Storage(S3StorageSettings.model_validate(table)) as storage:
            acknowledged = [make_record() for _ in range(3)]
            for record, data in acknowledged:
                await storage.save(record, data)
            async with anyio.create_task_group() as group:

                async def save_during_outage() -> None:
                    with pytest.raises(StorageError):
                        await storage.save(cut, cut_data)

                group.start_soon(save_during_outage)
                await proxy.arrived.wait()  # image written, record on its way
                await anyio.to_thread.run_sync(own_seaweed.kill)
                proxy.release()
            await anyio.to_thread.run_sync(own_seaweed.start)
            orphans_before = _orphan_images(own_seaweed, prefix)

            removed = await storage.remove_orphans(
                datetime.now(UTC) + timedelta(seconds=1)
            )
            loaded = [await storage.load(r.id) for r, _ in acknowledged]
            listed = await storage.list()

    assert orphans_before == [f"{prefix}{cut.id}.png"]
    assert removed == 1
    assert _orphan_images(own_seaweed, prefix) == []
    assert [(s.record, s.data) for s in loaded] == acknowledged
    assert sorted(r.id for r in listed.items) == sorted(r.id for r, _ in acknowledged)


def _orphan_images(server: SeaweedServer, prefix: str) -> list[str]:
    """Image keys under ``prefix`` whose record object is missing."""
    response = server.client().list_objects_v2(Bucket=TEST_BUCKET, Prefix=prefix)
    keys = {obj["Key"] for obj in response.get("Contents", [])}
    return sorted(
        key
        for key in keys
        if not key.endswith(".json") and key.rsplit(".", 1)[0] + ".json" not in keys
    )
