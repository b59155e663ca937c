"""Running awaitables concurrently with anyio task groups, keeping their order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio


async def gather(
    awaitables: Sequence[Any], *, return_exceptions: bool = False
) -> list[Any]:
    """Run awaitables concurrently in an anyio task group; keep their order.

    Args:
        awaitables: What to run.
        return_exceptions: Put an ``Exception`` in the result list instead of
            raising it (the others still finish).

    Returns:
        The results, in the order of ``awaitables``.
    """
    results: list[Any] = [None] * len(awaitables)

    async def run(index: int, awaitable: Any) -> None:
        try:
            results[index] = await awaitable
        except Exception as exc:
            if not return_exceptions:
                raise
            results[index] = exc

    try:
        async with anyio.create_task_group() as group:
            for index, awaitable in enumerate(awaitables):
                group.start_soon(run, index, awaitable)
    except BaseExceptionGroup as group_error:
        # Re-raise the first real error, not the group, so callers see our types.
        first = group_error.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return results
