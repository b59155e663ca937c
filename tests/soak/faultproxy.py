"""A loopback HTTP/1.1 proxy in front of the real KServe test server, injecting faults.

The fault of each request is written in its prompt, so a test knows which calls
must succeed: ``fault=<kind>`` fails every attempt, ``fault=<kind>*<n>`` the
first ``n`` attempts of that prompt (then the request passes, as after a
transient failure). Kinds:

- ``500``: the request goes to the server's ``fault-500`` model instead, so the
  answer *and what the server does with the connection afterwards* are real;
- ``503``: the proxy answers 503 "not ready" itself, keeping the connection;
- ``drop``: the proxy closes the connection without answering;
- ``garbage``: a 200 whose body is not an answer at all;
- ``slow``: forwarded after ``slow_delay`` seconds.

Each client connection gets its own upstream connection; bytes from upstream are
copied back untouched, and when upstream closes, the client's connection closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re

_FAULT = re.compile(rb"fault=(\w+)(?:\*(\d+))?")
_PROMPT_KEY = re.compile(rb"soak call (\d+)")
_MODEL = re.compile(rb"/models/[^/:\s]+")
KINDS = ("500", "503", "drop", "garbage", "slow")


class FaultProxy:
    """The proxy. Use as ``async with FaultProxy(host, port) as proxy: proxy.url``.

    Args:
        upstream_host: Host of the real KServe server.
        upstream_port: Its port.
        fault_model: Model of that server that answers 500.
        slow_delay: Seconds a ``slow`` request waits before it is forwarded.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        fault_model: str = "fault-500",
        slow_delay: float = 0.3,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.fault_model = fault_model.encode()
        self.slow_delay = slow_delay
        self.attempts: collections.Counter[bytes] = collections.Counter()
        self.actions: collections.Counter[str] = collections.Counter()
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """Base URL to give the KServe backend."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    def decide(self, body: bytes) -> str:
        """The action for one request (counting attempts per prompt)."""
        fault = _FAULT.search(body)
        if fault is None:
            return "pass"
        key = (_PROMPT_KEY.search(body) or fault).group(0)
        self.attempts[key] += 1
        times = fault.group(2)
        if times is not None and self.attempts[key] > int(times):
            return "pass"
        kind = fault.group(1).decode()
        return kind if kind in KINDS else "pass"

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        pump: asyncio.Task[None] | None = None
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(length.group(1))) if length else b""
                if pump is not None and pump.done():
                    # The server closed this connection after its last answer (as
                    # it does after a 500): the client reused it too late. Close
                    # without counting, as the server itself would.
                    return
                action = self.decide(body)
                self.actions[action] += 1
                if action == "drop":
                    return
                if action in ("503", "garbage"):
                    writer.write(_canned(action))
                    await writer.drain()
                    continue
                if action == "slow":
                    await asyncio.sleep(self.slow_delay)
                if action == "500":
                    line, rest = head.split(b"\r\n", 1)
                    head = _MODEL.sub(b"/models/" + self.fault_model, line, 1)
                    head += b"\r\n" + rest
                if upstream is None or pump is None:
                    upstream = await asyncio.open_connection(*self.upstream)
                    pump = asyncio.create_task(self._pump(upstream[0], writer))
                upstream[1].write(head + body)
                await upstream[1].drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # The proxy is closing. Ending quietly keeps asyncio from logging the
            # cancelled handler as an error.
            return
        finally:
            if pump is not None:
                pump.cancel()
            if upstream is not None:
                upstream[1].close()
            writer.close()
            self._tasks.discard(task)

    async def _pump(
        self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Copy the server's bytes back; close the client's side when it closes."""
        try:
            while chunk := await upstream.read(65536):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


def _canned(action: str) -> bytes:
    if action == "503":
        body = b'{"error": "Model with name sd-v1 is not ready."}'
        status = b"503 Service Unavailable"
        kind = b"application/json"
    else:
        body = b"\x00\x01<html>not json at all\xff"
        status = b"200 OK"
        kind = b"application/json"
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: "
        + kind
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
