"""``GET /metrics``: Prometheus counters of tool calls, backend requests, images
stored and busy rejections, from a real server process and in memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._http.metrics import PrometheusMetrics, ToolCallMetrics, metrics_of
from mcp_imagegen._plugins import PluginManager
from tests.http.conftest import StartServer

pytestmark = pytest.mark.anyio

PROMPT = "a lighthouse in the fog"
TOKEN = "metrics-token-5d1e0b"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or ``None`` when the exposition lacks it."""
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_count_tool_calls_backend_requests_images_and_busy_rejections(
    start_server: StartServer,
) -> None:
    server = start_server(
        config={
            "server": {"max_concurrent_generations": 1, "max_queued_generations": 0},
            # Slow enough that a second call finds the only slot taken.
            "backends.placeholder": {"delay_ms": 100},
        }
    )
    running = anyio.Event()

    async def on_progress(
        done: float, total: float | None, message: str | None
    ) -> None:
        running.set()

    slow: list[Any] = []

    async def slow_call() -> None:
        async with server.session() as session:
            slow.append(
                await session.call_tool(
                    "generate_image",
                    {"prompt": PROMPT, "width": 64, "height": 64, "steps": 10},
                    progress_callback=on_progress,
                )
            )

    with anyio.fail_after(90):
        async with server.session() as session:
            generated = await session.call_tool(
                "generate_image",
                {"prompt": PROMPT, "width": 64, "height": 64, "steps": 1},
            )
            bad = await session.call_tool(
                "generate_image", {"prompt": PROMPT, "width": 100}
            )
            listed = await session.call_tool("list_images", {})
            async with anyio.create_task_group() as group:
                group.start_soon(slow_call)
                await running.wait()
                busy = await session.call_tool(
                    "generate_image", {"prompt": PROMPT, "width": 64, "height": 64}
                )
        async with httpx.AsyncClient() as client:
            response = await client.get(server.base + "/metrics")

    assert not generated.is_error, generated.content
    assert bad.is_error
    assert not listed.is_error
    assert busy.is_error
    assert "busy" in str(busy.content)
    [slow_result] = slow
    assert not slow_result.is_error

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = parse(response.text)
    calls = "mcp_imagegen_tool_calls_total"
    assert value(samples, calls, tool="generate_image", outcome="ok") == 2
    # The bad argument and the busy rejection.
    assert value(samples, calls, tool="generate_image", outcome="error") == 2
    assert value(samples, calls, tool="list_images", outcome="ok") == 1
    assert value(samples, calls, tool="list_images", outcome="error") is None
    duration = "mcp_imagegen_tool_duration_seconds_count"
    assert value(samples, duration, tool="generate_image") == 4
    assert value(samples, duration, tool="list_images") == 1
    backend = "mcp_imagegen_backend_requests_total"
    # The bad and the busy call never reached the backend.
    assert value(samples, backend, backend="placeholder", outcome="ok") == 2
    assert (
        value(samples, "mcp_imagegen_images_stored_total", backend="placeholder") == 2
    )
    assert value(samples, "mcp_imagegen_busy_rejections_total") == 1
    assert value(samples, "mcp_imagegen_tool_calls_in_flight") == 0
    # Counts only: no prompt and no image id is exposed.
    [image] = generated.structured_content["images"]  # type: ignore[index]
    assert PROMPT not in response.text
    assert image["id"] not in response.text


async def test_metrics_need_no_token_and_count_a_call_refused_for_its_scope(
    start_server: StartServer,
) -> None:
    server = start_server(
        config={"server.auth": {"mode": "bearer", "bearer_scopes": ["images:read"]}},
        env={"MCP_IMAGEGEN_SERVER__AUTH__TOKENS": TOKEN},
    )

    with anyio.fail_after(60):
        async with server.session(Authorization=f"Bearer {TOKEN}") as session:
            with pytest.raises(MCPError, match="insufficient_scope"):
                await session.call_tool("generate_image", {"prompt": PROMPT})
        async with httpx.AsyncClient() as client:
            response = await client.get(server.base + "/metrics")

    assert response.status_code == 200
    samples = parse(response.text)
    calls = "mcp_imagegen_tool_calls_total"
    assert value(samples, calls, tool="generate_image", outcome="error") == 1
    assert value(samples, "mcp_imagegen_tool_calls_in_flight") == 0
    assert TOKEN not in response.text


# -- in memory: the middleware and the composition ------------------------------------


@pytest.fixture
def http_server_metrics(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., tuple[Any, PrometheusMetrics]]:
    def build(data: dict[str, Any] | None = None) -> tuple[Any, PrometheusMetrics]:
        server = create_server(make_settings(data), plugin_manager, http=True)
        metrics = metrics_of(server.service)
        assert metrics is not None
        return server, metrics

    return build


async def test_an_unknown_tool_name_is_counted_under_one_label(
    http_server_metrics: Callable[..., tuple[Any, PrometheusMetrics]],
) -> None:
    server, metrics = http_server_metrics()
    async with Client(server) as client:
        for name in ("no_such_tool", "another_made_up_name"):
            result = await client.call_tool(name, {})
            assert result.is_error
        await client.call_tool("list_backends", {})

    samples = parse(metrics.exposition().decode())
    calls = "mcp_imagegen_tool_calls_total"
    # Callers choose tool names: each would otherwise add a time series.
    assert value(samples, calls, tool="unknown", outcome="error") == 2
    assert value(samples, calls, tool="list_backends", outcome="ok") == 1
    assert not [key for key in samples if ("tool", "no_such_tool") in key[1]]


async def test_each_app_has_its_own_registry(
    http_server_metrics: Callable[..., tuple[Any, PrometheusMetrics]],
) -> None:
    first, first_metrics = http_server_metrics()
    _, second_metrics = http_server_metrics()
    async with Client(first) as client:
        await client.call_tool("list_backends", {})

    calls = "mcp_imagegen_tool_calls_total"
    first_samples = parse(first_metrics.exposition().decode())
    second_samples = parse(second_metrics.exposition().decode())
    assert value(first_samples, calls, tool="list_backends", outcome="ok") == 1
    assert value(second_samples, calls, tool="list_backends", outcome="ok") is None


def test_stdio_servers_have_no_metrics(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    server = create_server(make_settings(), plugin_manager)
    assert metrics_of(server.service) is None
    assert not [m for m in server.middleware if isinstance(m, ToolCallMetrics)]
