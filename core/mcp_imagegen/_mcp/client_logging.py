"""Logging to the client: our structlog events as ``notifications/message``.

The events are the ones the structlog pipeline writes to stderr, after the same
redaction (:func:`mcp_imagegen._logs.redact_secrets`); a processor in that
pipeline (:func:`mcp_imagegen._logs.forward_to_clients`) hands each to
whoever the current context names:

- inside a request, the request's own target (set by :class:`ClientLogHub`'s
  middleware): the events go back on that request's stream (related request
  id), so one client's request never reaches another client, and stateless
  HTTP gets them inside the POST's response;
- outside any request (the lifespan, background sweeps), the hub: the events
  go to every connection that asked with ``logging/setLevel``, on its
  standalone channel.

Who asked, and at which level: under protocol 2025-11-25 and older, a
connection's ``logging/setLevel`` (no notifications before it); under
2026-07-28, which dropped that method, the request's
``_meta["io.modelcontextprotocol/logLevel"]``, as the SDK reads it.

The processor is synchronous and may run in worker threads; it only queues.
A task per request (and a task per server-wide event) sends, so logging never
waits for the network, and a slow client loses events past a bounded buffer
rather than slowing the server. Events of work a request leaves running after
its answer (``image_stored`` listeners) are dropped: their request is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, get_args

import anyio
from anyio.abc import ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.connection import Connection, allowed_log_levels
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.types import (
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    RequestId,
    SetLevelRequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_imagegen._logs import client_log_sink

#: The MCP levels, least severe first (RFC 5424 order, as the SDK declares them).
LEVELS: Final[tuple[LoggingLevel, ...]] = get_args(LoggingLevel)
#: The ``logger`` field of every notification.
LOGGER_NAME: Final = "mcp_imagegen"
#: Events queued per request (or sends in flight for the hub) before new ones
#: are dropped.
BUFFER_SIZE: Final = 256

_Item = tuple[LoggingLevel, dict[str, Any]]


def levels_from(level: LoggingLevel | None) -> frozenset[LoggingLevel]:
    """``level`` and every more severe level; nothing for ``None``."""
    if level is None:
        return frozenset()
    return frozenset(LEVELS[LEVELS.index(level) :])


@dataclass(eq=False)
class _Queue:
    """A bounded, thread-safe hand-off from the processor to a sending task."""

    allowed: frozenset[LoggingLevel]
    send: MemoryObjectSendStream[_Item]
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)

    def offer(self, level: str, data: dict[str, Any]) -> None:
        """Queue one event for the sending task; drop it when full or closed."""
        if level not in self.allowed:
            return
        item: _Item = (level, data)  # a LoggingLevel: it is in allowed
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._put(item)
            return
        try:  # a worker thread: hand over to the loop that owns the stream
            self.loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the loop has closed: nobody is left to tell
            pass

    def _put(self, item: _Item) -> None:
        try:
            self.send.send_nowait(item)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # full (a slow client) or closed (the request has answered)


def _connection_of(session: ServerSession) -> Connection:
    # The SDK builds a session per request and keeps no public handle on the
    # connection it belongs to; the level a client set lives as long as that
    # connection, so it is keyed by it (the one private name used here).
    connection: Connection = session._connection
    return connection


class ClientLogHub:
    """Per server: the levels clients set and the sending of their events."""

    def __init__(self) -> None:
        self._levels: weakref.WeakKeyDictionary[Connection, LoggingLevel] = (
            weakref.WeakKeyDictionary()
        )

    async def set_level(
        self, ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams
    ) -> EmptyResult:
        """``logging/setLevel``: this connection's events at ``level`` and above."""
        self._levels[_connection_of(ctx.session)] = params.level
        return EmptyResult()

    def allowed_for(
        self, ctx: ServerRequestContext[Any, Any]
    ) -> frozenset[LoggingLevel]:
        """The levels this request's events may be sent at."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return allowed_log_levels(ctx.protocol_version, ctx.meta)
        return levels_from(self._levels.get(_connection_of(ctx.session)))

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Server middleware: the request's events go back on its own stream."""
        if ctx.request_id is None or ctx.method == "initialize":
            return await call_next(ctx)
        allowed = self.allowed_for(ctx)
        if not allowed:
            token = client_log_sink.set(None)  # nor to the hub: they are this request's
            try:
                return await call_next(ctx)
            finally:
                client_log_sink.reset(token)
        send, receive = anyio.create_memory_object_stream[_Item](BUFFER_SIZE)
        token = client_log_sink.set(_Queue(allowed, send))
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_send_to_request, receive, ctx.session, ctx.request_id)
                try:
                    result = await call_next(ctx)
                finally:
                    # The sender drains what is queued, then ends: the events
                    # precede the response on the request's stream.
                    send.close()
        finally:
            client_log_sink.reset(token)
        return result

    @asynccontextmanager
    async def broadcasting(self) -> AsyncIterator[None]:
        """Within it, events outside requests go to the connections that asked.

        Entered by the server's lifespan, so the service's background tasks
        (started inside) inherit the target. No task group: a host may exit
        the lifespan from another task than the one that entered it.
        """
        token = client_log_sink.set(_Broadcast(self))
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):  # exited from another context
                client_log_sink.reset(token)

    def wanted(self) -> dict[Connection, frozenset[LoggingLevel]]:
        """The connections a server-wide event may go to, with their levels."""
        return {
            connection: levels_from(level)
            for connection, level in list(self._levels.items())
            # 2026-07-28 forbids log notifications outside a request.
            if connection.protocol_version not in MODERN_PROTOCOL_VERSIONS
        }


class _Broadcast:
    """The hub's sink for server-wide events: a sending task per event."""

    def __init__(self, hub: ClientLogHub) -> None:
        self.hub = hub
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def allowed(self) -> frozenset[str]:
        """Every level some connection asked for."""
        return frozenset().union(*self.hub.wanted().values())

    def offer(self, level: str, data: dict[str, Any]) -> None:
        """Start sending ``data`` to the connections that want ``level``."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self._start(level, data)
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self.loop.call_soon_threadsafe(self._start, level, data)

    def _start(self, level: str, data: dict[str, Any]) -> None:
        if len(self.tasks) >= BUFFER_SIZE:
            return  # slow clients: drop rather than pile up
        params = {"level": level, "logger": LOGGER_NAME, "data": data}
        targets = [c for c, levels in self.hub.wanted().items() if level in levels]
        # An empty context: the sending logs nothing back to clients.
        task = self.loop.create_task(
            _notify_all(targets, params), context=contextvars.Context()
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def _notify_all(connections: list[Connection], params: dict[str, Any]) -> None:
    for connection in connections:
        # Never raises: a gone or channel-less (stateless HTTP) connection
        # drops it.
        await connection.notify("notifications/message", params)


async def _send_to_request(
    receive: ObjectReceiveStream[_Item], session: ServerSession, request_id: RequestId
) -> None:
    client_log_sink.set(None)  # the sending itself logs nothing to clients
    async with receive:
        async for level, data in receive:
            try:
                await session.send_notification(
                    LoggingMessageNotification(
                        params=LoggingMessageNotificationParams(
                            level=level, logger=LOGGER_NAME, data=data
                        )
                    ),
                    related_request_id=request_id,
                )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the client went away; the request ends on its own
