"""Run the HTTP app under uvicorn, with our own signal handling and drain."""

from __future__ import annotations

import importlib.util
import logging
import math
import signal
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.abc
import structlog
import uvicorn
from starlette.applications import Starlette

from mcp_imagegen._config import HttpSettings
from mcp_imagegen._http.app import Lifecycle, build_app, startup_log_filter
from mcp_imagegen._http.safety import is_loopback
from mcp_imagegen._mcp import ImageGenServer
from mcp_imagegen.errors import ConfigurationError

log = structlog.get_logger("mcp_imagegen._http")


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers.

    uvicorn re-raises a captured SIGTERM after shutting down, so the process
    would die by the signal instead of exiting 0 after a clean drain; the
    signals are handled by :func:`serve_http` instead.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def loop_options(choice: str) -> dict[str, Any]:
    """anyio's ``backend_options`` for ``server.http.loop``.

    ``auto`` takes uvloop where it is installed, as uvicorn's own default does
    (``serve_http`` runs uvicorn inside anyio, so uvicorn does not choose).

    Raises:
        ConfigurationError: for ``uvloop`` when it is not installed.
    """
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise ConfigurationError(
            'server.http.loop = "uvloop", but uvloop is not installed (it is not '
            'available on Windows); install it, or set loop = "auto" or "asyncio"'
        )
    return {"use_uvloop": True} if choice != "asyncio" and installed else {}


def tls_options(http: HttpSettings) -> dict[str, Any]:
    """uvicorn's TLS options for ``http``: none, or the certificate and its key.

    The pair is loaded here first, so a missing file, a file that is not PEM, a
    key that does not match the certificate or an encrypted key is one line at
    start, before anything is bound (and never a pass phrase prompt).

    Raises:
        ConfigurationError: naming the settings and what is wrong.
    """
    if http.tls_certfile is None or http.tls_keyfile is None:
        return {}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # A pass phrase callback: an encrypted key fails instead of prompting.
        context.load_cert_chain(http.tls_certfile, http.tls_keyfile, lambda: b"")
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"server.http.tls_certfile ({http.tls_certfile}) and tls_keyfile "
            f"({http.tls_keyfile}): not a PEM certificate chain and its unencrypted "
            f"private key ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"server.http.tls_certfile / tls_keyfile: cannot read "
            f"{exc.filename or http.tls_certfile}: {exc.strerror or exc}"
        ) from None
    return {
        "ssl_certfile": str(http.tls_certfile),
        "ssl_keyfile": str(http.tls_keyfile),
    }


def _uvicorn(app: Starlette, http: HttpSettings, grace: int) -> _Server:
    """The uvicorn server for ``app``, warning when no MCP request could pass."""
    config = uvicorn.Config(
        app,
        host=http.host,
        port=http.port,
        lifespan="on",
        # Our logging is configured already (stderr, structlog formatting).
        log_config=None,
        timeout_graceful_shutdown=grace,
        server_header=False,
        **tls_options(http),
    )
    if not is_loopback(http.host) and not (http.public_url or http.allowed_hosts):
        log.warning(
            "http_no_allowed_hosts",
            detail="bound beyond loopback with neither server.http.public_url nor "
            "server.http.allowed_hosts: every MCP request is refused (421)",
        )
    return _Server(config)


async def serve_http(server: ImageGenServer, http: HttpSettings) -> int:
    """Serve MCP over streamable HTTP until SIGTERM or SIGINT.

    A signal stops accepting connections, flips ``/readyz`` to 503, refuses new
    MCP requests, and lets in-flight ones finish for up to ``drain_timeout``;
    then the rest are cancelled (their backend requests with them), the service
    stops and the process exits 0. A second signal stops at once.

    Args:
        server: The server to run.
        http: ``[server.http]``.

    Returns:
        The exit code (0).

    Raises:
        BaseException: whatever stopped the service from starting.
    """
    lifecycle = Lifecycle()
    drain = http.drain_timeout.total_seconds()
    grace = math.ceil(drain)  # uvicorn takes whole seconds
    web = _uvicorn(build_app(server, http, lifecycle), http, grace)

    async def watch_drain() -> None:
        # uvicorn waits (a moment after us) for open connections, then cancels
        # what still runs; say so in our own log, naming the setting.
        with anyio.move_on_after(grace):
            # uvicorn has no event for its connection set; it polls it too.
            while web.server_state.connections:  # noqa: ASYNC110
                await anyio.sleep(0.1)
            return
        log.warning(
            "drain_timeout_exceeded",
            drain_timeout=drain,
            open_connections=len(web.server_state.connections),
            detail="calls still running are cancelled (server.http.drain_timeout)",
        )

    async def handle_signals(group: anyio.abc.TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if lifecycle.draining:
                    log.warning("shutdown_forced", signal=name)
                    web.force_exit = True
                    continue
                lifecycle.begin_drain()
                web.should_exit = True
                log.info("drain_started", signal=name, drain_timeout=drain)
                group.start_soon(watch_drain)

    uvicorn_log = logging.getLogger("uvicorn.error")
    log_filter = startup_log_filter(lifecycle)
    uvicorn_log.addFilter(log_filter)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(handle_signals, group)
            try:
                await web.serve()
            except SystemExit:
                # uvicorn exits when the app's startup fails; report why instead.
                if lifecycle.startup_error is None:
                    raise
            group.cancel_scope.cancel()
    finally:
        uvicorn_log.removeFilter(log_filter)
    if lifecycle.startup_error is not None:
        raise lifecycle.startup_error
    log.info("server_stopped")
    return 0
