"""``mcp_imagegen.gather``: the one helper that runs calls concurrently.

The service (saves, health checks, post-processing) and the S3 storage (record
reads, single deletes) both use it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest

from mcp_imagegen import StorageError, gather

pytestmark = pytest.mark.anyio


class Tracker:
    """Counts the calls in flight and remembers the most seen at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.cancelled = 0

    async def call(self, value: int, *, yields: int = 3) -> int:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            for _ in range(yields):  # let the others start, if they may
                await anyio.lowlevel.checkpoint()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        return value


async def test_results_keep_the_order_of_the_calls() -> None:
    tracker = Tracker()
    # The first call yields longest, so it finishes last.
    calls = [
        functools.partial(tracker.call, value, yields=10 - value) for value in range(8)
    ]

    assert await gather(calls) == list(range(8))
    assert tracker.most == 8


async def test_a_limit_bounds_the_calls_in_flight() -> None:
    tracker = Tracker()

    results = await gather(
        [functools.partial(tracker.call, value) for value in range(10)], limit=3
    )

    assert results == list(range(10))
    assert tracker.most == 3


async def test_the_first_error_is_raised_alone_and_the_others_are_cancelled() -> None:
    tracker = Tracker()

    async def fail() -> int:
        await anyio.lowlevel.checkpoint()
        raise StorageError("disk full")

    calls: list[Callable[[], Awaitable[int]]] = [
        functools.partial(tracker.call, value, yields=50) for value in range(3)
    ]
    with pytest.raises(StorageError, match="disk full"):
        await gather([*calls, fail])

    assert tracker.cancelled == 3
    assert tracker.in_flight == 0


async def test_return_exceptions_puts_each_error_in_its_place() -> None:
    async def fail() -> int:
        raise StorageError("no")

    async def one() -> int:
        return 1

    results = await gather([one, fail, one], return_exceptions=True)

    assert results[0::2] == [1, 1]
    assert isinstance(results[1], StorageError)


async def test_no_calls_give_no_results() -> None:
    assert await gather([]) == []


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_limit_below_one_is_refused(limit: int) -> None:
    async def one() -> int:
        return 1

    with pytest.raises(ValueError, match="limit must be at least 1"):
        await gather([one], limit=limit)


def test_the_s3_storage_has_no_gather_of_its_own() -> None:
    # It had gather_bounded, a near-copy of the service's gather.
    import mcp_imagegen_s3.listing
    import mcp_imagegen_s3.objects

    assert mcp_imagegen_s3.objects.gather is gather
    assert mcp_imagegen_s3.listing.gather is gather
