"""Structured logging with structlog, always to stderr (stdout is the protocol)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Collection, MutableMapping
from typing import Any, Protocol

import structlog

from mcp_imagegen._config import LoggingSettings

# REDACTED is re-exported: callers and tests import it from here.
from mcp_imagegen._redaction import REDACTED as REDACTED
from mcp_imagegen._redaction import redact_value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets in every value of an event.

    Values whose key looks like a secret are masked whole; every string (the
    event text too, at any depth) has the credentials of its URLs masked
    (:func:`mcp_imagegen._redaction.redact_url_text`).
    """
    for key, value in list(event_dict.items()):
        event_dict[key] = redact_value(value, key)
    return event_dict


class ClientLogSink(Protocol):
    """Where events go besides stderr: the MCP layer's client notifications."""

    @property
    def allowed(self) -> Collection[str]:
        """The levels wanted (``debug`` ... ``emergency``); others are not offered."""

    def offer(self, level: str, data: dict[str, Any]) -> None:
        """Take one JSON-safe event; must not block (any thread may call)."""


#: The current context's sink: set per request by the MCP layer for clients
#: that asked for log notifications (``_mcp/client_logging.py``); ``None``
#: sends nowhere.
client_log_sink: contextvars.ContextVar[ClientLogSink | None] = contextvars.ContextVar(
    "mcp_imagegen_client_log_sink", default=None
)
_LEVEL_NAMES = {"warn": "warning", "exception": "error", "fatal": "critical"}
# Tracebacks are internals (paths, code, values): clients get the event only.
_NOT_FOR_CLIENTS = frozenset({"exc_info", "exception", "stack_info"})
#: Events for the operator only: ``tool_called`` (``_mcp.audit``) names the
#: caller. It is logged by the outermost middleware, outside the request's own
#: stream; should that context ever carry the server-wide sink, the event would
#: go to every connected client.
SERVER_ONLY_EVENTS = frozenset({"tool_called"})


def forward_to_clients(
    _logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: hand the (redacted) event to the context's sink.

    Runs after :func:`redact_secrets`, so clients see what stderr shows; the
    event goes on unchanged to the stderr renderer.
    """
    sink = client_log_sink.get()
    if sink is None or event_dict.get("event") in SERVER_ONLY_EVENTS:
        return event_dict
    level = str(event_dict.get("level", method)).lower()
    level = _LEVEL_NAMES.get(level, level)
    if level not in sink.allowed:
        return event_dict
    data = {k: v for k, v in event_dict.items() if k not in _NOT_FOR_CLIENTS}
    # JSON-safe here, in the logging thread, so the sender holds no live objects.
    sink.offer(level, json.loads(json.dumps(data, default=str)))
    return event_dict


def configure_logging(settings: LoggingSettings | None = None) -> None:
    """Send structlog and stdlib logging events to stderr, rendered alike.

    ``format = "auto"`` renders for humans on a terminal and JSON lines otherwise.
    Libraries (the MCP SDK, httpx, botocore) log through the standard library;
    their records go through a ``structlog.stdlib.ProcessorFormatter`` with the
    same processors (timestamp, level, redaction), so ``format = "json"`` gives
    JSON on every line. Python warnings are routed to logging for the same reason.
    """
    settings = settings or LoggingSettings()
    level = getattr(logging, settings.level.upper())
    use_json = settings.format == "json" or (
        settings.format == "auto" and not sys.stderr.isatty()
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared,
            forward_to_clients,  # our own events only, not library records
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Only stdlib records take this chain; ``extra=`` fields become keys
        # before redaction sees them.
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            *shared,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    # Library INFO chatter (one line per MCP request) only at debug.
    root.setLevel(
        logging.DEBUG if level <= logging.DEBUG else max(level, logging.WARNING)
    )
    logging.captureWarnings(True)
