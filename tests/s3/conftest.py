"""Fixtures for the S3 storage tests: a real SeaweedFS server for the session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from mcp_imagegen_s3 import S3Storage, S3StorageSettings
from tests.s3.seaweed import SeaweedServer, shared_server


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """The session's SeaweedFS server, with bucket ``TEST_BUCKET`` created."""
    with shared_server(tmp_path_factory.getbasetemp()) as server:
        yield server


@pytest.fixture
def unique_prefix() -> str:
    """A key prefix no other test uses, so tests share the bucket safely."""
    return f"test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def s3_settings(
    seaweed: SeaweedServer, unique_prefix: str
) -> Callable[..., S3StorageSettings]:
    """Build settings for the test server; keyword arguments override the table."""

    def build(**overrides: Any) -> S3StorageSettings:
        table = seaweed.storage_table(**{"prefix": unique_prefix, **overrides})
        return S3StorageSettings.model_validate(table)

    return build


@pytest.fixture
async def s3_storage(
    s3_settings: Callable[..., S3StorageSettings],
) -> AsyncIterator[S3Storage]:
    """A started S3 storage on an empty prefix of the test bucket."""
    async with S3Storage(s3_settings()) as storage:
        yield storage
