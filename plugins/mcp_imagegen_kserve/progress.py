"""Progress of one ``kserve`` generation: per image, plus heartbeats while waiting."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import anyio
import structlog

from mcp_imagegen import ProgressReporter
from mcp_imagegen_kserve.settings import KServeSettings

# One logger name for the whole backend, as before it was split into modules.
log = structlog.get_logger("mcp_imagegen_kserve.backend")


class ProgressTracker:
    """Reports strictly increasing progress: per image, plus heartbeats between.

    ``done`` counts finished images; while waiting, a fraction that grows with
    elapsed time but never reaches 1 is added, so every report moves forward (MCP
    requires progress to increase) and clients that reset their timeout on
    progress keep the call alive.

    Args:
        report: Where progress goes (the service's reporter).
        total: How many images the call makes.
        model: The model's name, for the messages.
        settings: The backend's settings (heartbeat interval, timeout).
    """

    def __init__(
        self,
        report: ProgressReporter,
        total: int,
        model: str,
        settings: KServeSettings,
    ) -> None:
        self._report: Callable[[float, float | None, str | None], Awaitable[None]] = (
            report
        )
        self.total = total
        self.model = model
        self.done = 0
        self._interval = settings.heartbeat_interval
        self._scale = max(settings.timeout, 1.0)
        self._last = -1.0
        self._begun = time.monotonic()
        self._lock = anyio.Lock()

    def _elapsed(self) -> float:
        return time.monotonic() - self._begun

    def _partial(self) -> float:
        elapsed = self._elapsed()
        return self.done + elapsed / (elapsed + self._scale)

    async def send(self, done: float, message: str) -> None:
        """Report ``done`` (raised just above the last report if it is not higher)."""
        async with self._lock:
            value = done if done > self._last else math.nextafter(self._last, math.inf)
            self._last = value
            try:
                await self._report(value, float(self.total), message)
            except Exception as exc:  # a lost progress report must not fail the call
                log.debug(
                    "kserve_progress_failed", error=f"{type(exc).__name__}: {exc}"
                )

    async def heartbeat(self) -> None:
        """Report every ``heartbeat_interval`` seconds until cancelled."""
        while True:
            await anyio.sleep(self._interval)
            message = f"waiting for model '{self.model}' — {self._elapsed():.0f} s"
            if self.total > 1:
                message += f" ({self.done}/{self.total} images done)"
            await self.send(self._partial(), message)

    async def note(self, message: str) -> None:
        """Report ``message`` with a little more progress than the last report."""
        await self.send(self._partial(), message)

    async def image_done(self) -> None:
        """Count one more finished image and report it."""
        self.done += 1
        await self.send(
            self.done,
            f"received image {self.done}/{self.total} from model '{self.model}'",
        )
