"""The S3 server going away in the middle of a run, and coming back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from mcp_imagegen import ImageNotFoundError, StorageError
from mcp_imagegen.testing import make_record
from mcp_imagegen_s3 import S3Storage, S3StorageSettings
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
