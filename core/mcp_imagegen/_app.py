"""Composition root: settings + plugins → service → MCP server, and serving it."""

from __future__ import annotations

import os
import signal
import sys
from typing import IO

import anyio
import structlog
from mcp.server.stdio import stdio_server

from mcp_imagegen._config import Settings
from mcp_imagegen._logs import configure_logging
from mcp_imagegen._plugins import PluginManager, load_plugins
from mcp_imagegen._server import ImageGenServer, build_mcp_server
from mcp_imagegen._service import ImageService

#: Exit codes of ``serve``: the shell's 128 + signal number convention.
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM

log = structlog.get_logger("mcp_imagegen._app")


def create_server(
    settings: Settings, plugins: PluginManager | None = None
) -> ImageGenServer:
    """Build the whole server for ``settings``.

    Components are constructed (and their settings validated) now; they start when
    the server's lifespan begins, i.e. when a client connects.

    Raises:
        ConfigurationError: for any invalid setting or unknown component.
    """
    if not structlog.is_configured():
        # structlog's default writes to stdout, which is the stdio protocol.
        configure_logging(settings.logging)
    if plugins is None:
        plugins = load_plugins(settings.plugins.disabled)
    service = ImageService.from_settings(settings, plugins)
    server = build_mcp_server(service)
    plugins.register_tools(server, service)
    return server


class _StdinLines(anyio.AsyncFile[str]):
    """stdin whose pending read a cancellation abandons.

    The SDK's own stdin reader waits in a worker thread that cancellation cannot
    interrupt, so SIGINT/SIGTERM hung until the client closed stdin.
    """

    #: True while a worker thread is blocked in ``readline``.
    reading = False

    async def readline(self) -> str:
        """Read one line in a worker thread; cancelling abandons the thread."""
        self.reading = True
        line = await anyio.to_thread.run_sync(
            self.wrapped.readline, abandon_on_cancel=True
        )
        self.reading = False
        return line


def _is_broken_pipe(group: BaseExceptionGroup[BaseException]) -> bool:
    """Whether every error in ``group`` says the client closed its end."""
    rest = group.split((BrokenPipeError, ConnectionResetError))[1]
    return rest is None


async def serve_stdio(server: ImageGenServer, stdin: IO[str] | None = None) -> int:
    """Serve MCP on stdin/stdout until EOF, a signal, or the client vanishing.

    SIGINT and SIGTERM cancel everything in flight (cancelled saves leave no
    partial files) and return 130 or 143. A client that disappears mid-call
    (broken pipe) is logged once and returns 0: nothing went wrong on our side.

    Args:
        server: the server to run.
        stdin: the text stream to read (default: a UTF-8 view of the process's
            stdin).

    Returns:
        The process exit code.
    """
    if stdin is None:
        # A duplicate descriptor: closing this stream never closes sys.stdin.
        stdin = os.fdopen(
            os.dup(sys.stdin.fileno()), "r", encoding="utf-8", errors="replace"
        )
    lines = _StdinLines(stdin)
    exit_code = 0

    async def on_signal(scope: anyio.CancelScope) -> None:
        nonlocal exit_code
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                exit_code = 128 + signum
                log.info("shutdown_requested", signal=signal.Signals(signum).name)
                scope.cancel()
                return

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(on_signal, group.cancel_scope)
            async with stdio_server(stdin=lines) as (read_stream, write_stream):
                low = server._lowlevel_server
                await low.run(
                    read_stream, write_stream, low.create_initialization_options()
                )
            group.cancel_scope.cancel()
    except BaseExceptionGroup as errors:
        if not _is_broken_pipe(errors):
            raise
        log.info("client_disconnected", reason="broken pipe")
    if lines.reading:
        # A worker thread is still blocked reading stdin; the interpreter would
        # wait for it forever at exit, so leave now (logs are already written).
        sys.stderr.flush()
        os._exit(exit_code)
    return exit_code
