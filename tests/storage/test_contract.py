"""Every built-in storage passes the storage contract (mcp_imagegen.testing)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from mcp_imagegen import ImageStorage, new_image_id
from mcp_imagegen.testing import StorageContract, make_record
from mcp_imagegen_file.storage import FileStorage
from mcp_imagegen_s3 import S3Storage
from tests.s3.seaweed import TEST_BUCKET, SeaweedServer


class TestFileStorageContract(StorageContract):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[FileStorage]:
        settings = FileStorage.Settings(directory=tmp_path / "images")
        async with FileStorage(settings) as storage:
            yield storage

    async def plant_leftovers(self, storage: ImageStorage) -> int:
        """What a save killed half way leaves: a temp file, an image without record."""
        assert isinstance(storage, FileStorage)
        image_id = new_image_id()
        day = f"{image_id[0:4]}-{image_id[4:6]}-{image_id[6:8]}"
        shard = anyio.Path(storage.directory) / day / image_id[9:11]
        await shard.mkdir(parents=True, exist_ok=True)
        await (shard / f".tmp-{image_id}.json-0badf00d").write_bytes(b'{"id": ')
        await (shard / f"{image_id}.png").write_bytes(b"\x89PNG half an image")
        return 2


@pytest.mark.s3
class TestS3StorageContract(StorageContract):
    @pytest.fixture
    async def storage(self, seaweed: SeaweedServer) -> AsyncIterator[S3Storage]:
        table = seaweed.storage_table(prefix=f"contract-{uuid.uuid4().hex[:12]}/")
        self.seaweed, self.prefix = seaweed, table["prefix"]
        async with S3Storage(S3Storage.Settings.model_validate(table)) as storage:
            yield storage

    async def plant_leftovers(self, storage: ImageStorage) -> int:
        # A save writes the image first and its record last: one killed between
        # the two puts (or a delete killed between its two deletes) leaves an
        # image object without a record. Saves use single PUTs, no multipart.
        client = self.seaweed.client()
        for extension, mime_type in (("png", "image/png"), ("webp", "image/webp")):
            record, data = make_record(mime_type=mime_type)
            key = f"{self.prefix}{record.id}.{extension}"
            put = functools.partial(
                client.put_object,
                Bucket=TEST_BUCKET,
                Key=key,
                Body=data,
                ContentType=mime_type,
            )
            await anyio.to_thread.run_sync(put)
        return 2
