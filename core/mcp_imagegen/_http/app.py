"""The Starlette app: the SDK's streamable HTTP endpoint plus health and drain."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_imagegen._config import HttpSettings
from mcp_imagegen._http.auth import install_resource_metadata
from mcp_imagegen._http.cors import CorsMiddleware
from mcp_imagegen._http.images import ImageUrls, image_route
from mcp_imagegen._http.metrics import metrics_of
from mcp_imagegen._http.safety import transport_security
from mcp_imagegen._mcp import ImageGenServer
from mcp_imagegen._service import HEALTH_CHECK_TIMEOUT, ImageService
from mcp_imagegen.errors import MCPImageError

log = structlog.get_logger("mcp_imagegen._http")

#: JSON-RPC error code of a request refused while the server drains
#: (the implementation-defined server error range).
SHUTTING_DOWN = -32000


@dataclass
class Lifecycle:
    """What the HTTP layer knows about the process's life.

    Attributes:
        draining: Set on SIGTERM/SIGINT: /readyz says 503, new MCP requests are
            refused with a JSON-RPC error.
        startup_error: Why the service failed to start, for a one-line report.
        stopping: Set when the app's lifespan starts to shut down, i.e. every
            in-flight request has ended or the drain timeout has passed.
        not_ready: What /readyz last found not ready, to log changes only.
    """

    draining: bool = False
    startup_error: BaseException | None = None
    not_ready: list[str] = field(default_factory=list)
    stopping: anyio.Event = field(default_factory=anyio.Event)
    #: Open GET streams of the MCP endpoint (stateful mode), ended on drain.
    streams: set[anyio.CancelScope] = field(default_factory=set)

    def begin_drain(self) -> None:
        """Flip to draining and end the idle GET streams.

        A stateful client keeps a GET stream open for server messages; the
        drain waits for open connections, so it would otherwise last the whole
        ``drain_timeout`` for every connected client.
        """
        self.draining = True
        for scope in self.streams:
            scope.cancel()


def build_app(
    server: ImageGenServer, http: HttpSettings, lifecycle: Lifecycle
) -> Starlette:
    """The ASGI app for ``serve --transport http``.

    The SDK's streamable HTTP app (its session manager enters the server's
    lifespan once per process, also when stateless), with ``/healthz``,
    ``/readyz``, ``/metrics`` (when the server was built for HTTP), the signed
    ``/images/{id}`` links, the refusal of new requests while draining and the
    CORS answers for ``cors_origins``.
    """
    app = server.streamable_http_app(
        streamable_http_path=http.path,
        stateless_http=http.stateless,
        max_request_body_size=http.max_body_bytes,
        session_idle_timeout=http.session_idle_timeout.total_seconds(),
        max_sessions=http.max_sessions,
        transport_security=transport_security(http),
        host=http.host,
    )
    service = server.service
    install_resource_metadata(app, service.settings)
    app.router.routes.extend(_routes(service, http, lifecycle))
    app.router.lifespan_context = _lifespan(
        app.router.lifespan_context, http, lifecycle
    )
    app.add_middleware(
        DrainMiddleware,
        lifecycle=lifecycle,
        path=http.path,
        max_body=http.max_body_bytes,
    )
    if http.cors_origins:
        # Outermost: preflights are answered before the token is asked for, and
        # every answer (a 401, a drain's 503) carries the CORS headers.
        app.add_middleware(CorsMiddleware, origins=http.cors_origins, path=http.path)
    return app


def _routes(
    service: ImageService, http: HttpSettings, lifecycle: Lifecycle
) -> list[Route]:
    """The routes beside the MCP endpoint; none of them needs a token."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        return await _readyz(service, lifecycle)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        # Outside the MCP endpoint's auth: its links carry their own signature.
        image_route(service, ImageUrls.from_settings(http)),
    ]
    metrics = metrics_of(service)
    if metrics is not None:
        # For the cluster's Prometheus; it holds counts only.
        routes.append(Route("/metrics", metrics.endpoint, methods=["GET"]))
    return routes


async def _readyz(service: ImageService, lifecycle: Lifecycle) -> JSONResponse:
    """``/readyz``: 200 when the default backend and the storage are healthy."""
    if lifecycle.draining:
        return JSONResponse(
            {"status": "draining", "not_ready": ["draining"]}, status_code=503
        )
    checks = await readiness(service)
    not_ready = sorted(name for name, check in checks.items() if not check["ok"])
    if not_ready != lifecycle.not_ready:
        # Probes ask every few seconds: log changes only. Details (internal
        # URLs, errors) stay in the log: the endpoint is unauthenticated.
        lifecycle.not_ready = not_ready
        (log.warning if not_ready else log.info)(
            "readiness_changed",
            ready=not not_ready,
            not_ready=not_ready,
            checks=checks,
        )
    body = {
        "status": "not ready" if not_ready else "ok",
        "not_ready": not_ready,
        "checks": {name: {"status": check["status"]} for name, check in checks.items()},
    }
    return JSONResponse(body, status_code=503 if not_ready else 200)


def _lifespan(
    sdk_lifespan: Any, http: HttpSettings, lifecycle: Lifecycle
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """The SDK's lifespan, noting a failed start-up and the moment serving stops."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started = False
        try:
            async with sdk_lifespan(app):
                started = True
                log.info(
                    "http_serving",
                    scheme="https" if http.tls_certfile else "http",
                    host=http.host,
                    port=http.port,
                    path=http.path,
                    # "uvloop" or "asyncio" (server.http.loop)
                    loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
                )
                try:
                    yield
                finally:
                    lifecycle.stopping.set()
        except BaseException as exc:
            if not started:
                lifecycle.startup_error = exc
            raise

    return lifespan


def startup_log_filter(lifecycle: Lifecycle) -> Callable[[logging.LogRecord], bool]:
    """Drop uvicorn's traceback of a start-up failure that is our own error.

    uvicorn logs it with Starlette's traceback text; our errors are reported in
    one line by the command instead.
    """

    def not_our_startup_error(record: logging.LogRecord) -> bool:
        error = lifecycle.startup_error
        return not (
            error is not None
            and _is_ours(error)
            and record.getMessage().startswith("Traceback")
        )

    return not_our_startup_error


async def readiness(service: ImageService) -> dict[str, dict[str, Any]]:
    """Check the default backend and the storage, concurrently.

    Returns:
        ``{"backend:<name>": {...}, "storage:<name>": {...}}``, each with ``ok``,
        ``status`` and, when not ok, ``detail``.
    """
    name = service.settings.generation.backend
    backend = service.backends[name]
    storage = service.storage
    checks: dict[str, dict[str, Any]] = {}

    async def check_backend() -> None:
        try:
            with anyio.fail_after(HEALTH_CHECK_TIMEOUT):
                health = await backend.check_health()
            checks[f"backend:{name}"] = {
                "ok": health.ok,
                "status": health.status,
                **({"detail": health.detail} if health.detail else {}),
            }
        except Exception as exc:
            checks[f"backend:{name}"] = _failed(exc, f"backend {name}")

    async def check_storage() -> None:
        try:
            # The cheapest call every storage has; it proves the store answers.
            with anyio.fail_after(HEALTH_CHECK_TIMEOUT):
                await storage.list(1)
            checks[f"storage:{storage.instance_name}"] = {"ok": True, "status": "ok"}
        except Exception as exc:
            checks[f"storage:{storage.instance_name}"] = _failed(exc, "storage")

    async with anyio.create_task_group() as group:
        group.start_soon(check_backend)
        group.start_soon(check_storage)
    return checks


def _is_ours(error: BaseException) -> bool:
    """Whether ``error`` is (or wraps only) our own, client-worthy errors."""
    if isinstance(error, BaseExceptionGroup):
        return all(_is_ours(inner) for inner in error.exceptions)
    return isinstance(error, MCPImageError)


def _failed(exc: Exception, what: str) -> dict[str, Any]:
    if isinstance(exc, TimeoutError):
        detail = f"health check timed out after {HEALTH_CHECK_TIMEOUT:g} s"
    elif isinstance(exc, MCPImageError):
        detail = str(exc)  # our errors are written for clients
    else:
        # An unexpected error may carry internals (URLs, credentials).
        log.exception("readiness_check_crashed", component=what)
        detail = f"check failed ({type(exc).__name__}); the server log has details"
    return {"ok": False, "status": "unavailable", "detail": detail}


class DrainMiddleware:
    """While draining, answer new JSON-RPC requests to the MCP endpoint with 503.

    Notifications and responses still pass: a client may cancel or answer a
    call that is finishing.
    """

    def __init__(
        self, app: ASGIApp, lifecycle: Lifecycle, path: str, max_body: int
    ) -> None:
        self.app = app
        self.lifecycle = lifecycle
        self.path = path.rstrip("/")
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if scope["method"] == "POST" and declared > self.max_body:
            # The SDK's own 413 is plain text, which MCP clients turn into a
            # bare "error response"; a JSON-RPC error reaches the caller.
            await _too_large(declared, self.max_body)(scope, receive, send)
            return
        if not self.lifecycle.draining:
            if scope["method"] == "GET":
                await self._stream(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _shutting_down(None)(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if len(body) > self.max_body:
                await _shutting_down(None)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "method" in payload and "id" in payload:
            await _shutting_down(payload["id"])(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a GET stream that :meth:`Lifecycle.begin_drain` can end."""
        started = complete = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, complete
            started = started or message["type"] == "http.response.start"
            if message["type"] == "http.response.body":
                complete = not message.get("more_body", False)
            await send(message)

        with anyio.CancelScope() as cancel_scope:
            self.lifecycle.streams.add(cancel_scope)
            try:
                await self.app(scope, receive, tracking_send)
            finally:
                self.lifecycle.streams.discard(cancel_scope)
        if cancel_scope.cancelled_caught and started and not complete:
            # End the stream properly: the client sees it close, not break.
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _shutting_down(request_id: Any) -> JSONResponse:
    return JSONResponse(
        {
            "jsonrpc": "2.0",
            "id": request_id,
            "error": {"code": SHUTTING_DOWN, "message": "server is shutting down"},
        },
        status_code=503,
        headers={"Connection": "close", "Retry-After": "1"},
    )


def _content_length(scope: Scope) -> int:
    """The request's declared Content-Length; -1 when absent or unreadable."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return -1


def _too_large(size: int, limit: int) -> JSONResponse:
    return JSONResponse(
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32600,
                "message": f"Request body too large: {size} bytes, over "
                f"server.http.max_body_bytes ({limit}). Send less (an image as a "
                "data URI takes 4/3 of its bytes: use a smaller image, or a "
                "URL or path where inputs allows them), or raise "
                "server.http.max_body_bytes.",
            },
        },
        status_code=413,
        headers={"Connection": "close"},
    )
