"""Helpers shared by the KServe backend tests."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class KServeServer:
    """A running test model server."""

    url: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def log_tail(self, lines: int = 40) -> str:
        """Return the end of the server's log, for failure messages."""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Path prefix the test server's "ingress" strips (path-based routing).
ROUTE_PREFIX = "/serving/test-ns/sd"
#: Token the test server's ``secure`` model accepts.
TEST_TOKEN = "test-token-7f3a9c"

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
