"""Events: ``image_stored`` listeners, run in the background after the reply."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc

from mcp_imagegen.models import ImageRecord

#: Announces one stored image to every listener; never raises (the composition
#: root binds it to the plugin manager's ``image_stored`` with its timeout).
Announcer = Callable[[ImageRecord], Coroutine[Any, Any, None]]


async def announce_to_nobody(record: ImageRecord) -> None:
    """An :data:`Announcer` for a service without listeners."""


class StoredEvents:
    """Starts the ``image_stored`` listeners of each stored image.

    Inside ``async with`` listeners run in a task group, after the reply has gone
    out; leaving waits for them (each bounded by the announcer's own timeout), or
    cancels them when leaving on an error. Outside, nothing may outlive the call,
    so :meth:`announce` waits for the listeners itself.

    Args:
        announcer: Announces one record to every listener.
    """

    def __init__(self, announcer: Announcer) -> None:
        self.announcer = announcer
        self._listeners: anyio.abc.TaskGroup | None = None

    async def announce(self, record: ImageRecord) -> None:
        """Start the listeners for ``record`` (or run them, when not entered)."""
        if self._listeners is None:
            await self.announcer(record)
            return
        self._listeners.start_soon(self.announcer, record)

    async def __aenter__(self) -> Self:
        group = anyio.create_task_group()
        await group.__aenter__()
        self._listeners = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._listeners is None:
            return
        listeners, self._listeners = self._listeners, None
        if exc_type is not None:
            listeners.cancel_scope.cancel()
        await listeners.__aexit__(*cancellation_only(exc_type, exc, tb))


def cancellation_only(
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> tuple[type[BaseException] | None, BaseException | None, TracebackType | None]:
    """What a background task group's ``__aexit__`` must be told of its host's end.

    A cancellation must reach it: told "no error" while an outer scope cancels,
    the group leaves its cancel scope half exited (a signal during start-up then
    ended in a RuntimeError and a hung process). Any other error is its host's,
    not the group's: passed in, anyio would wrap it in an ExceptionGroup.
    """
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return exc_type, exc, tb
    return None, None, None
