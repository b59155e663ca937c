"""``GET /metrics``: Prometheus metrics of ``serve --transport http``.

:class:`PrometheusMetrics` is the service's observer (backend requests, images
stored, busy rejections) and hands out :class:`ToolCallMetrics`, the MCP server
middleware that counts and times tool calls. Each instance has its own
``CollectorRegistry``: tests and several servers in one process never share
counters, and nothing registers in the library's global registry.

The exposition holds counts and durations only, labelled by tool, backend
instance and outcome: never a prompt, an image id or a token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from mcp_imagegen._mcp.tools import called_tool, is_error_result
from mcp_imagegen._service import ImageService

#: Tool-call outcomes.
OK, ERROR = "ok", "error"
#: Histogram buckets (seconds) for tool calls and backend requests: listing
#: answers in milliseconds, a diffusion model takes seconds to minutes.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


class PrometheusMetrics:
    """The Prometheus metrics of one server, in a registry of their own.

    It implements :class:`~mcp_imagegen._service.ServiceObserver`; pass it to
    the service and add :meth:`middleware` to the MCP server.

    Attributes:
        registry: The registry every metric here is registered in.
    """

    def __init__(self) -> None:
        """Create every metric in a new registry."""
        self.registry = CollectorRegistry()
        registry = self.registry
        self.tool_calls = Counter(
            "mcp_imagegen_tool_calls",
            "MCP tool calls, by tool and outcome (ok, error).",
            ["tool", "outcome"],
            registry=registry,
        )
        self.tool_duration = Histogram(
            "mcp_imagegen_tool_duration_seconds",
            "Duration of MCP tool calls, by tool.",
            ["tool"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "mcp_imagegen_tool_calls_in_flight",
            "MCP tool calls running now.",
            registry=registry,
        )
        self.backend_requests = Counter(
            "mcp_imagegen_backend_requests",
            "Backend requests, by backend instance and outcome (ok, cancelled or "
            "the error class).",
            ["backend", "outcome"],
            registry=registry,
        )
        self.backend_duration = Histogram(
            "mcp_imagegen_backend_request_duration_seconds",
            "Duration of backend requests (slot wait excluded), by backend instance.",
            ["backend"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.images_stored = Counter(
            "mcp_imagegen_images_stored",
            "Images stored, by the backend instance that made them.",
            ["backend"],
            registry=registry,
        )
        self.busy_rejections = Counter(
            "mcp_imagegen_busy_rejections",
            "Generations refused because every slot and the queue were full.",
            registry=registry,
        )

    # -- ServiceObserver ----------------------------------------------------------

    def backend_request(self, backend: str, outcome: str, seconds: float) -> None:
        """Count one backend request and observe its duration."""
        self.backend_requests.labels(backend, outcome).inc()
        self.backend_duration.labels(backend).observe(seconds)

    def image_stored(self, backend: str) -> None:
        """Count one stored image."""
        self.images_stored.labels(backend).inc()

    def busy_rejected(self) -> None:
        """Count one busy rejection."""
        self.busy_rejections.inc()

    # -- MCP and HTTP -------------------------------------------------------------

    def middleware(self, is_tool: Callable[[str], bool]) -> ToolCallMetrics:
        """The MCP server middleware counting this server's tool calls.

        Args:
            is_tool: Whether a name is a registered tool (others are counted as
                :data:`UNKNOWN_TOOL`).
        """
        return ToolCallMetrics(self, is_tool)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)

    async def endpoint(self, request: Request) -> Response:
        """``GET /metrics``."""
        return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)


class ToolCallMetrics:
    """MCP server middleware: counts and times ``tools/call`` requests.

    A call is ``ok`` unless its result says ``isError`` or it raises (an
    unknown tool, invalid parameters, a missing scope, a cancellation).
    Register it outermost, so that refusals by other middleware count too.
    """

    def __init__(self, metrics: PrometheusMetrics, is_tool: Callable[[str], bool]):
        """Create the middleware.

        Args:
            metrics: Where to count.
            is_tool: Whether a name is a registered tool.
        """
        self.metrics = metrics
        self.is_tool = is_tool

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Time one inbound request if it is a tool call, then pass it on."""
        tool = called_tool(ctx, self.is_tool)
        if tool is None:
            return await call_next(ctx)
        metrics = self.metrics
        outcome = ERROR
        metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            result = await call_next(ctx)
            outcome = ERROR if is_error_result(result) else OK
            return result
        finally:
            metrics.in_flight.dec()
            metrics.tool_calls.labels(tool, outcome).inc()
            metrics.tool_duration.labels(tool).observe(time.perf_counter() - started)


def metrics_of(service: ImageService) -> PrometheusMetrics | None:
    """The metrics a service reports to, if the composition root gave it some."""
    observer = service.observer
    return observer if isinstance(observer, PrometheusMetrics) else None
