"""The contract suite runs over the file storage and the S3 storage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.s3.seaweed import SeaweedServer, shared_server


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """The session's SeaweedFS server (shared with tests/s3)."""
    with shared_server(tmp_path_factory.getbasetemp()) as server:
        yield server
