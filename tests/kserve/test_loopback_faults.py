"""Connection-level faults played by a raw HTTP/1.1 server on 127.0.0.1.

A KServe server cannot be told to drop a kept-alive socket at the worst moment,
and ``httpx.MockTransport`` has no sockets or connection pool at all, so these
faults come from a tiny server written on anyio sockets: it plays one scripted
action per request it reads. The backend runs unchanged over a real httpx
transport; :class:`CountingTransport` only counts the attempts passing through it.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from PIL import Image

from mcp_imagegen import (
    BackendError,
    BackendUnavailableError,
    GenerationRequest,
    ignore_progress,
)
from mcp_imagegen_kserve.backend import KServeBackend
from mcp_imagegen_kserve.settings import KServeSettings
from tests.kserve.support import FAST_RETRIES, free_port

pytestmark = pytest.mark.anyio

TOKEN = "loopback-token-5d1e0b7a"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _answer(status: int, doc: dict[str, Any], *, close: bool = False) -> bytes:
    body = json.dumps(doc).encode()
    reason = httpx.codes.get_reason_phrase(status)
    head = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    if close:
        head.append("connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


ANSWERS = {
    "ok": _answer(
        200, {"predictions": [{"image": {"b64": base64.b64encode(_png()).decode()}}]}
    ),
    # A predictor exception: KServe answers 500 and keeps the connection open.
    "500": _answer(500, {"error": "ValueError : CUDA out of memory"}),
    "503": _answer(503, {"error": "Model with name sd is not ready."}, close=True),
}


class LoopbackServer:
    """Plays ``actions`` in order, one per request read (the last one repeats).

    Actions: a key of ``ANSWERS``; ``close`` (read the request, then close the
    socket without a byte of answer); ``reset`` (the same with a TCP reset);
    ``503-then-stop`` (answer 503, then stop listening: later connects are refused).
    """

    def __init__(self, listener: anyio.abc.SocketListener, actions: list[str]) -> None:
        self.listener = listener
        self.actions = actions
        self.port: int = listener.extra(SocketAttribute.local_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests = 0
        self.connections = 0
        self._scope = anyio.CancelScope()

    async def serve(self) -> None:
        with self._scope:
            async with self.listener:
                await self.listener.serve(self._handle)

    async def _handle(self, stream: SocketStream) -> None:
        self.connections += 1
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            # Bounded: a test sends a handful of requests per connection.
            for _ in range(100):
                try:
                    head = await reader.receive_until(b"\r\n\r\n", 65536)
                except (anyio.EndOfStream, anyio.IncompleteRead):
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.receive_exactly(length)
                self.requests += 1
                action = (
                    self.actions.pop(0) if len(self.actions) > 1 else self.actions[0]
                )
                if action == "close":
                    return
                if action == "reset":
                    raw = stream.extra(SocketAttribute.raw_socket)
                    # SO_LINGER 0: close() sends RST, so the client reads ECONNRESET.
                    raw.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    return
                if action == "503-then-stop":
                    await stream.send(ANSWERS["503"])
                    self._scope.cancel()
                    return
                await stream.send(ANSWERS[action])


@asynccontextmanager
async def loopback_server(*actions: str) -> AsyncIterator[LoopbackServer]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server = LoopbackServer(listener, list(actions))
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        try:
            yield server
        finally:
            group.cancel_scope.cancel()


class CountingTransport(httpx.AsyncBaseTransport):
    """httpx's real transport, counting the requests sent through it."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.attempts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def open_backend(
    url: str, transport: httpx.AsyncBaseTransport | None = None, **options: Any
) -> AsyncIterator[KServeBackend]:
    settings = KServeSettings(url=url, model="sd", **{**FAST_RETRIES, **options})
    async with KServeBackend(
        settings, instance_name="sdxl", transport=transport
    ) as backend:
        yield backend


def request() -> GenerationRequest:
    return GenerationRequest(prompt="a cat", width=64, height=64, seed=1)


# -- item 2: a kept-alive connection the server dropped ---------------------------


@pytest.mark.parametrize("drop", ["close", "reset"])
async def test_a_request_on_a_connection_dropped_after_a_500_is_retried(
    drop: str,
) -> None:
    async with (
        loopback_server("500", drop, "ok") as server,
        open_backend(server.url, max_retries=2) as backend,
    ):
        with pytest.raises(BackendError, match="CUDA out of memory"):
            await backend.generate(request(), ignore_progress)
        assert server.requests == 1  # a real 500 is still not retried

        # The next, healthy request goes out on the pooled connection, which the
        # server drops without answering: RemoteProtocolError or ReadError.
        [image] = await backend.generate(request(), ignore_progress)

    assert image.mime_type == "image/png"
    assert server.requests == 3
    assert server.connections == 2  # the retry opened a fresh connection


async def test_a_dropped_reused_connection_is_retried_only_within_max_retries() -> None:
    async with (
        loopback_server("500", "close") as server,
        open_backend(server.url, max_retries=0) as backend,
    ):
        with pytest.raises(BackendError):
            await backend.generate(request(), ignore_progress)
        with pytest.raises(BackendUnavailableError, match="connection broke"):
            await backend.generate(request(), ignore_progress)

    assert server.requests == 2


async def test_a_fresh_connection_dropped_before_the_answer_is_not_retried() -> None:
    # On a new connection the request surely reached the server, which may have
    # started generating: repeating it could double the GPU time.
    async with (
        loopback_server("close", "ok") as server,
        open_backend(server.url, max_retries=3) as backend,
    ):
        with pytest.raises(BackendUnavailableError, match="connection broke"):
            await backend.generate(request(), ignore_progress)

    assert server.requests == 1


# -- item 23: a wrong URL fails at once ---------------------------------------------


async def test_a_refused_first_connection_fails_at_once_naming_url_and_key() -> None:
    url = f"http://127.0.0.1:{free_port()}/serving/team/sd"
    transport = CountingTransport()
    async with open_backend(url, transport, max_retries=6, token=TOKEN) as backend:
        with pytest.raises(BackendUnavailableError) as caught:
            await backend.generate(request(), ignore_progress)
        health = await backend.check_health()

    message = str(caught.value)
    assert transport.attempts == 2  # the generate attempt and the health check
    assert "backends.sdxl.url" in message
    assert url in message and "refused" in message
    assert TOKEN not in message
    assert health.status == "unavailable"


async def test_a_refused_connection_after_the_server_answered_is_retried() -> None:
    # The server was there a moment ago (503: loading); a refused connection now
    # is a restart, not a wrong URL, so the retries keep their budget.
    transport = CountingTransport()
    async with loopback_server("503-then-stop") as server:
        async with open_backend(server.url, transport, max_retries=2) as backend:
            with pytest.raises(BackendUnavailableError) as caught:
                await backend.generate(request(), ignore_progress)

    assert server.requests == 1
    assert transport.attempts == 3
    assert "Gave up after 3 attempt(s)" in str(caught.value)
