"""Every built-in storage passes the storage contract (mcp_imagegen.testing)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcp_imagegen.testing import StorageContract
from mcp_imagegen_file.storage import FileStorage
from mcp_imagegen_s3 import S3Storage
from tests.s3.seaweed import SeaweedServer


class TestFileStorageContract(StorageContract):
    @pytest.fixture
    async def storage(self, tmp_path: Path) -> AsyncIterator[FileStorage]:
        settings = FileStorage.Settings(directory=tmp_path / "images")
        async with FileStorage(settings) as storage:
            yield storage


@pytest.mark.s3
class TestS3StorageContract(StorageContract):
    @pytest.fixture
    async def storage(self, seaweed: SeaweedServer) -> AsyncIterator[S3Storage]:
        table = seaweed.storage_table(prefix=f"contract-{uuid.uuid4().hex[:12]}")
        async with S3Storage(S3Storage.Settings.model_validate(table)) as storage:
            yield storage
