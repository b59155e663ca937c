"""Admission: the generation slots and the busy errors of a full queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from mcp_imagegen._service.observer import NULL_OBSERVER, ServiceObserver
from mcp_imagegen.errors import BusyError

if TYPE_CHECKING:
    from mcp_imagegen._config import ServerSettings


class Admission:
    """``server.max_concurrent_generations`` slots, with a bounded queue and wait.

    Args:
        settings: The ``[server]`` section (slot count, queue length, queue timeout).
        observer: Told about each busy rejection.
    """

    def __init__(
        self, settings: ServerSettings, observer: ServiceObserver = NULL_OBSERVER
    ) -> None:
        self.settings = settings
        self.observer = observer
        self._slots = anyio.Semaphore(settings.max_concurrent_generations)
        self._waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one generation slot for the body of the ``async with``.

        Raises:
            BusyError: when the queue is full, or no slot frees up within
                ``server.queue_timeout``.
        """
        await self._acquire()
        try:
            yield
        finally:
            self._slots.release()

    async def _acquire(self) -> None:
        server = self.settings
        try:
            # A free slot is taken at once: such a request never counts as
            # waiting, so it cannot make a concurrent one look over the queue limit.
            self._slots.acquire_nowait()
            return
        except anyio.WouldBlock:
            pass
        if self._waiting >= server.max_queued_generations:
            self.observer.busy_rejected()
            raise BusyError(
                f"The server is busy: {server.max_concurrent_generations} generations "
                f"running and {self._waiting} waiting. Try again shortly."
            )
        self._waiting += 1
        try:
            with anyio.fail_after(server.queue_timeout.total_seconds()):
                await self._slots.acquire()
        except TimeoutError:
            self.observer.busy_rejected()
            raise BusyError(
                "The server is busy: no generation slot became free within "
                f"{server.queue_timeout.total_seconds():g} s. Try again shortly."
            ) from None
        finally:
            self._waiting -= 1
