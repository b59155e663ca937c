"""Saves and listings when a request hangs, fails or is cancelled half-way.

The faults come from a loopback proxy between the storage and the real SeaweedFS
(tests/s3/proxy.py), never from inside the storage.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from mcp_imagegen import StorageError
from mcp_imagegen.testing import make_record, save_many
from mcp_imagegen_s3 import S3Storage, S3StorageSettings
from tests.s3.proxy import Action, FaultyProxy
from tests.s3.seaweed import TEST_BUCKET, SeaweedServer
from tests.s3.test_s3_storage import keys_under

pytestmark = [pytest.mark.anyio, pytest.mark.s3]

Build = Callable[..., S3StorageSettings]


def hold_record_puts(method: str, path: str) -> Action:
    return "hold" if method == "PUT" and path.endswith(".json") else "pass"


async def test_a_save_cancelled_in_flight_leaves_no_object(
    seaweed: SeaweedServer, s3_settings: Build, unique_prefix: str
) -> None:
    record, data = make_record()
    async with FaultyProxy(seaweed.endpoint, hold_record_puts) as proxy:
        settings = s3_settings(endpoint_url=proxy.endpoint)
        async with S3Storage(settings) as storage, anyio.create_task_group() as group:
            group.start_soon(storage.save, record, data)
            await proxy.arrived.wait()  # the image is written, its record hangs
            group.cancel_scope.cancel()

    assert ("PUT", f"/{TEST_BUCKET}/{unique_prefix}{record.id}.json") not in (
        proxy.forwarded
    )  # the record PUT was aborted, never sent on
    assert keys_under(seaweed, unique_prefix) == set()


async def test_a_failing_record_read_cancels_the_other_reads_of_the_page(
    seaweed: SeaweedServer, s3_settings: Build, unique_prefix: str
) -> None:
    items = [make_record() for _ in range(5)]
    async with S3Storage(s3_settings()) as direct:
        await save_many(direct, items)
    failing = f"{items[2][0].id}.json"

    def rule(method: str, path: str) -> Action:
        if method != "GET" or not path.endswith(".json"):
            return "pass"
        return "hold_then_fail" if path.endswith(failing) else "hold"

    async with FaultyProxy(seaweed.endpoint, rule) as proxy:
        settings = s3_settings(endpoint_url=proxy.endpoint, max_attempts=1)
        async with S3Storage(settings) as storage:

            async def fail_once_all_reads_hang() -> None:
                await _until(lambda: proxy.held == len(items))
                proxy.fail_held()

            async with anyio.create_task_group() as group:
                group.start_soon(fail_once_all_reads_hang)
                with pytest.raises(StorageError, match="InternalError"):
                    await storage.list(limit=10)
            # The other reads were aborted by the failure: their connections
            # close, so the proxy drops them rather than forwarding them later.
            await _until(lambda: proxy.held == 0)

        assert (proxy.held, proxy.dropped) == (0, len(items) - 1)
        assert not [p for m, p in proxy.forwarded if m == "GET" and p.endswith(".json")]


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for ``condition``; the assertions after it say what failed."""
    for _ in range(400):
        if condition():
            return
        await anyio.sleep(0.025)
