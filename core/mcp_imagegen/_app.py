"""The composition root: settings → plugin manager → components → service → server.

Nothing else assembles the system: the CLI's ``serve``, ``generate`` and
``config``, the tests and the benchmarks all build through :func:`build_service`
or :func:`create_server`. Serving over stdio lives here too.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import anyio
import pydantic
import structlog

from mcp_imagegen._config import (
    Settings,
    StorageSettings,
    redacted_dump,
    validate_component_table,
)
from mcp_imagegen._logs import configure_logging
from mcp_imagegen._plugins import Kind, PluginManager, load_plugins
from mcp_imagegen._redaction import redact
from mcp_imagegen._service import NULL_OBSERVER, ImageService, ServiceObserver
from mcp_imagegen._styles import build_styles
from mcp_imagegen.interfaces import (
    Component,
    ImageStorage,
    InferenceBackend,
    PostProcessor,
)
from mcp_imagegen.models import ImageRecord

if TYPE_CHECKING:
    from mcp.server.auth.provider import TokenVerifier
    from mcp.server.auth.settings import AuthSettings
    from mcp.server.context import ServerMiddleware

    from mcp_imagegen._mcp import ImageGenServer
    from mcp_imagegen._mcp.content import ImageLink

#: Exit codes of ``serve``: the shell's 128 + signal number convention.
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM

log = structlog.get_logger("mcp_imagegen._app")


@dataclass
class Components:
    """Every configured component, built and validated but not started."""

    backends: dict[str, InferenceBackend]
    storage: ImageStorage
    steps: dict[str, PostProcessor]


def build_components(settings: Settings, plugins: PluginManager) -> Components:
    """Build every configured component (no I/O yet).

    Raises:
        ConfigurationError: for an unknown component type or an invalid table,
            naming the key and where it was set.
    """
    settings.check_default_backend(plugins.component_types("backend"))
    backends: dict[str, InferenceBackend] = {}
    for name, raw in settings.backend_instances().items():
        backend = _build_named(settings, plugins, "backend", "backends", name, raw)
        assert isinstance(backend, InferenceBackend)
        backends[name] = backend
    return Components(
        backends=backends,
        storage=_build_storage(settings, plugins),
        steps=_build_steps(settings, plugins),
    )


def build_service(
    settings: Settings,
    plugins: PluginManager | None = None,
    *,
    observer: ServiceObserver = NULL_OBSERVER,
) -> ImageService:
    """Build the service for ``settings`` (no I/O yet; enter it to start).

    Args:
        settings: The configuration.
        plugins: The plugin manager; ``None`` loads the installed plugins, minus
            ``plugins.disabled``.
        observer: Told about backend requests, stored images and busy
            rejections (the metrics of ``serve --transport http``).

    Raises:
        ConfigurationError: for an unknown component type or an invalid table,
            naming the key and where it was set.
    """
    if plugins is None:
        plugins = load_plugins(settings.plugins.disabled)
    components = build_components(settings, plugins)
    styles = build_styles(
        settings, plugins.styles(), components.backends, components.steps
    )
    timeout = settings.plugins.image_stored_timeout.total_seconds()

    async def announce(record: ImageRecord) -> None:
        await plugins.image_stored(record, per_listener=timeout)

    return ImageService(
        settings,
        components.backends,
        components.storage,
        components.steps,
        announcer=announce,
        observer=observer,
        styles=styles,
    )


def _http_auth(
    settings: Settings,
) -> tuple[TokenVerifier | None, AuthSettings | None, list[ServerMiddleware[Any]]]:
    """``build_mcp_server``'s token verifier, auth settings and scope middleware."""
    from mcp_imagegen._http.auth import ScopeMiddleware, auth_for

    verifier, auth = auth_for(settings)
    return verifier, auth, [ScopeMiddleware()] if verifier is not None else []


def _image_link(settings: Settings) -> ImageLink | None:
    """Signed ``/images/{id}`` links when ``server.http.public_url`` is set."""
    if settings.server.http.public_url is None:
        return None  # no address a client could reach: keep the storage's URLs
    from mcp_imagegen._http.images import ImageUrls

    return ImageUrls.from_settings(settings.server.http).link


def create_server(
    settings: Settings, plugins: PluginManager | None = None, *, http: bool = False
) -> ImageGenServer:
    """Build the whole server for ``settings``.

    Components are constructed (and their settings validated) now; they start when
    the server's lifespan begins, i.e. when a client connects. With ``http``, the
    server checks tokens and scopes as ``[server.auth]`` says (stdio needs none:
    whoever starts the process owns it), keeps Prometheus metrics (served at
    ``/metrics`` by the HTTP app), and with ``server.http.public_url`` links
    file-stored images to its signed ``/images/{id}`` URLs.

    Raises:
        ConfigurationError: for any invalid setting or unknown component.
    """
    if not structlog.is_configured():
        # structlog's default writes to stdout, which is the stdio protocol.
        configure_logging(settings.logging)
    # Imported here: ``generate`` and ``config`` build only the service, and
    # need not pay for importing the MCP server.
    from mcp_imagegen._mcp import build_mcp_server
    from mcp_imagegen._mcp.tools import has_tool

    if plugins is None:
        plugins = load_plugins(settings.plugins.disabled)
    if not http:
        service = build_service(settings, plugins)
        server = build_mcp_server(service)
    else:
        from mcp_imagegen._http.metrics import PrometheusMetrics

        metrics = PrometheusMetrics()
        service = build_service(settings, plugins, observer=metrics)
        verifier, auth, scopes = _http_auth(settings)

        def is_tool(name: str) -> bool:
            # Looked up per call: tools plugins add below are found too.
            return has_tool(server, name)

        # Metrics outermost: calls refused for their scope count as errors too.
        middleware = [metrics.middleware(is_tool), *scopes]
        server = build_mcp_server(
            service, verifier, auth, middleware, _image_link(settings), http=True
        )
    plugins.register_tools(server, service)
    return server


def effective_configuration(service: ImageService) -> dict[str, Any]:
    """The configuration with every component table filled in, secrets masked."""
    settings = service.settings
    data = redacted_dump(settings)
    data["backends"] = {
        name: {"type": backend.name, **backend.settings.model_dump(mode="json")}
        for name, backend in service.backends.items()
    }
    data["storage"] = {
        key: value
        for key, value in data["storage"].items()
        if key in StorageSettings.model_fields
    }
    data["storage"][service.storage.name] = service.storage.settings.model_dump(
        mode="json"
    )
    data["postprocess"] = {
        name: {"type": step.name, **step.settings.model_dump(mode="json")}
        for name, step in service.steps.items()
        if name in settings.postprocess
    }
    return redact(data)


def _build_storage(settings: Settings, plugins: PluginManager) -> ImageStorage:
    storage_type = settings.storage.backend
    storage_cls = plugins.component_type(
        "storage",
        storage_type,
        key="storage.backend",
        source=settings.source_of("storage.backend"),
    )
    storage_options = validate_component_table(
        settings,
        storage_cls.Settings,
        settings.storage.table(storage_type),
        f"storage.{storage_type}",
    )
    storage = storage_cls(storage_options, instance_name=storage_type)
    for table in settings.storage.table_names():
        # Tables of other registered types may wait for a switch of backend;
        # a table naming no type at all is a typo and must not pass silently.
        key = f"storage.{table}"
        plugins.component_type(
            "storage", table, key=key, source=settings.source_of(key)
        )
    assert isinstance(storage, ImageStorage)
    return storage


def _build_steps(
    settings: Settings, plugins: PluginManager
) -> dict[str, PostProcessor]:
    steps: dict[str, PostProcessor] = {}
    # A step type's own name is a step with default options (when its settings
    # have defaults; a type with required settings is usable only through a
    # [postprocess.<name>] table, and must not break start-up when unused)...
    for type_name, step_cls in plugins.component_types("postprocessor").items():
        if type_name in settings.postprocess:
            continue  # its own table follows
        try:
            options = step_cls.Settings.model_validate({})
        except pydantic.ValidationError:
            log.debug("postprocess_step_needs_settings", step_type=type_name)
            continue
        steps[type_name] = step_cls(options, instance_name=type_name)  # type: ignore[assignment]
    # ...and [postprocess.<name>] tables define named steps (or override those).
    for name, raw in settings.postprocess.items():
        step = _build_named(
            settings, plugins, "postprocessor", "postprocess", name, raw
        )
        assert isinstance(step, PostProcessor)
        steps[name] = step
    return steps


def _build_named(
    settings: Settings,
    plugins: PluginManager,
    kind: Kind,
    section: str,
    name: str,
    raw: Mapping[str, Any],
) -> Component:
    """Build the component of table ``[<section>.<name>]``.

    Its ``type`` key names the component type and defaults to ``name``; the other
    keys are validated by that type's ``Settings``.
    """
    table = dict(raw)
    type_name = str(table.pop("type", name))
    type_key = f"{section}.{name}.type"
    component_cls = plugins.component_type(
        kind, type_name, key=type_key, source=settings.source_of(type_key)
    )
    options = validate_component_table(
        settings, component_cls.Settings, table, f"{section}.{name}"
    )
    return component_cls(options, instance_name=name)


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
    from mcp.server.stdio import stdio_server  # only ``serve`` needs the SDK

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
