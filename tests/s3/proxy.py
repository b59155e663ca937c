"""A loopback HTTP proxy in front of SeaweedFS that misbehaves on request.

Faults are injected at the boundary (the network between the storage and S3), never
inside the storage: a rule can hold chosen requests until released, or answer them
with a 500. Requests are forwarded unchanged (same Host header, path, query and
body), so SigV4 signatures stay valid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

import aiohttp
from aiohttp import web

Action = Literal["pass", "hold", "fail", "hold_then_fail"]
#: ``(method, path) -> action``; the path includes the bucket (path-style).
Rule = Callable[[str, str], Action]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "expect",
    }
)
_FAILURE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>injected by the test proxy</Message></Error>"
)


class FaultyProxy:
    """Forwards to ``upstream``; ``rule`` decides per request what happens.

    ``hold`` waits for :meth:`release`, then forwards; ``hold_then_fail`` waits for
    :meth:`fail_held`, then answers 500; ``fail`` answers 500 at once.

    Attributes:
        held: Requests waiting for :meth:`release` right now.
        arrived: Set whenever a request is held.
        forwarded: ``(method, path)`` of every request sent upstream.
        dropped: How many held requests ended because their client went away.
    """

    def __init__(self, upstream: str, rule: Rule) -> None:
        self.upstream = upstream.rstrip("/")
        self.rule = rule
        self.held = 0
        self.dropped = 0
        self.arrived = asyncio.Event()
        self.forwarded: list[tuple[str, str]] = []
        self._release = asyncio.Event()
        self._fail = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.endpoint = ""

    async def __aenter__(self) -> FaultyProxy:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Cancel a handler when its client disconnects, so a held request of a
        # cancelled call is never forwarded later.
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def release(self) -> None:
        """Let every held request (and later ones the rule holds) through."""
        self._release.set()

    def fail_held(self) -> None:
        """Answer the ``hold_then_fail`` requests (and later ones) with a 500."""
        self._fail.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        action = self.rule(request.method, request.path)
        body = await request.read()
        if action in ("hold", "hold_then_fail"):
            await self._hold(self._release if action == "hold" else self._fail)
        if action in ("fail", "hold_then_fail"):
            return web.Response(
                status=500, body=_FAILURE, content_type="application/xml"
            )
        return await self._forward(request, body)

    async def _hold(self, until: asyncio.Event) -> None:
        self.held += 1
        self.arrived.set()
        try:
            await until.wait()
        except asyncio.CancelledError:
            self.dropped += 1
            raise
        finally:
            self.held -= 1

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        assert self._session is not None
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _HOP_BY_HOP
        }
        self.forwarded.append((request.method, request.path))
        try:
            async with self._session.request(
                request.method,
                self.upstream + request.path_qs,
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=("Content-Type", "User-Agent", "Accept-Encoding"),
            ) as upstream:
                payload = await upstream.read()
                out = {
                    name: value
                    for name, value in upstream.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                }
                return web.Response(status=upstream.status, body=payload, headers=out)
        except (aiohttp.ClientError, OSError):
            return web.Response(
                status=502, body=_FAILURE.replace(b"InternalError", b"BadGateway")
            )
