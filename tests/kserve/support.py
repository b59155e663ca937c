"""Helpers shared by the KServe backend tests."""

from __future__ import annotations

from typing import Any

#: Settings that keep fault tests quick: short backoff between retries.
FAST_RETRIES: dict[str, Any] = {"retry_backoff": 0.02, "retry_backoff_max": 0.1}


class ProgressLog:
    """A ProgressReporter that records every report."""

    def __init__(self) -> None:
        self.reports: list[tuple[float, float | None, str | None]] = []

    async def __call__(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        self.reports.append((done, total, message))

    @property
    def messages(self) -> list[str]:
        """Every message, in order."""
        return [message or "" for _, _, message in self.reports]
