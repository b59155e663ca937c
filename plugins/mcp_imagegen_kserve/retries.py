"""Retry policy of the ``kserve`` backend: what is worth another attempt, and when.

Transient failures (connection errors, 502/503/504) are retried with jittered
exponential backoff; a request lost on a kept-alive connection the server had
closed is retried at once (:class:`ConnectionTrace` tells); a connection refused
before the server ever answered is a wrong address and is not retried.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import httpx

from mcp_imagegen_kserve.settings import KServeSettings

#: Transport errors of a request on a kept-alive connection the server had closed.
STALE_CONNECTION_ERRORS = (
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


class ConnectionTrace:
    """What one attempt did on the wire, learned from httpcore's trace events.

    Passed as the request's ``trace`` extension. A transport without these events
    (a test's ``MockTransport``) never looks stale, so nothing is retried there.
    """

    def __init__(self) -> None:
        self.connected = False
        self.sent = False
        self.answered = False

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        """Record one httpcore trace event."""
        if event.startswith(("connection.connect_tcp.", "connection.connect_unix")):
            self.connected = True
        elif event.endswith(".send_request_headers.started"):
            self.sent = True
        elif event.endswith(".receive_response_headers.complete"):
            self.answered = True

    @property
    def stale(self) -> bool:
        """Whether the request went out on a reused connection and got no answer."""
        return self.sent and not self.connected and not self.answered


def backoff_delay(
    attempt: int, settings: KServeSettings, retry_after: float | None = None
) -> float:
    """Return the wait before attempt ``attempt + 1``, in seconds.

    Exponential (``retry_backoff * 2**(attempt-1)``, capped at
    ``retry_backoff_max``) with jitter in [50 %, 100 %], so that many clients
    waiting on one cold start do not retry in lockstep. A server's
    ``Retry-After`` lengthens the wait, up to ``retry_backoff_max``.
    """
    growth = 2.0 ** min(attempt - 1, 60)
    wait: float = min(settings.retry_backoff_max, settings.retry_backoff * growth)
    wait *= random.uniform(0.5, 1.0)
    if retry_after is not None:
        wait = max(wait, min(retry_after, settings.retry_backoff_max))
    return wait


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Return a ``Retry-After`` header in seconds, or ``None`` if absent or odd."""
    value = headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 3600 else None


def caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Tell whether ``kind`` is somewhere in the cause chain of ``exc``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def connection_refused(exc: BaseException) -> bool:
    """Tell whether every address tried refused the connection (nothing listens)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        if isinstance(current, BaseExceptionGroup):
            # anyio groups the failures of a host with several addresses.
            return all(connection_refused(inner) for inner in current.exceptions)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
