"""Running calls concurrently in an anyio task group, keeping their order.

Re-exported from the package face as :func:`mcp_imagegen.gather`: the service
(saves, health checks, post-processing) and storages (the S3 plugin's record
reads and deletes) share this one helper.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar, overload

import anyio

T = TypeVar("T")


@overload
async def gather(
    calls: Iterable[Callable[[], Awaitable[T]]],
    *,
    limit: int | None = None,
    return_exceptions: Literal[False] = False,
) -> list[T]: ...


@overload
async def gather(
    calls: Iterable[Callable[[], Awaitable[T]]],
    *,
    limit: int | None = None,
    return_exceptions: Literal[True],
) -> list[T | Exception]: ...


async def gather(
    calls: Iterable[Callable[[], Awaitable[Any]]],
    *,
    limit: int | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """Run calls concurrently in an anyio task group; results in call order.

    A task group rather than ``asyncio.gather``: when one call fails the others
    are cancelled (their requests aborted), and none outlives this function.
    Calls, not awaitables, so that a call that never starts (its limit slot
    never came, or another call failed first) leaves no coroutine unawaited.

    Args:
        calls: Functions taking no arguments that return what to await
            (``functools.partial(storage.delete, image_id)``).
        limit: At most this many calls in flight; ``None``: no bound.
        return_exceptions: Put an ``Exception`` in the result list in place of
            the call's result instead of raising it (the others still finish).

    Returns:
        The results, in the order of ``calls``.

    Raises:
        Exception: the first error of a call, alone (not an exception group),
            unless ``return_exceptions`` is set.
        ValueError: if ``limit`` is below 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"gather: limit must be at least 1, got {limit}.")
    calls = list(calls)
    if len(calls) == 1:
        # The common case (one image per call): a task group and a task for one
        # call cost more than the call's own bookkeeping; the result, the error
        # raised and cancellation are the same when it is awaited directly.
        try:
            return [await calls[0]()]
        except Exception as exc:
            if not return_exceptions:
                raise
            return [exc]
    limiter = anyio.CapacityLimiter(limit) if limit is not None else None
    results: list[Any] = [None] * len(calls)

    async def run(index: int, call: Callable[[], Awaitable[Any]]) -> None:
        try:
            async with limiter or contextlib.nullcontext():
                results[index] = await call()
        except Exception as exc:
            if not return_exceptions:
                raise
            results[index] = exc

    try:
        async with anyio.create_task_group() as group:
            for index, call in enumerate(calls):
                group.start_soon(run, index, call)
    except BaseExceptionGroup as group_error:
        # Re-raise the first real error, not the group, so callers see our types.
        first = group_error.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return results
