"""SIGTERM drains in-flight calls, refuses new ones, cancels stragglers, exits 0."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import httpx
import pytest
from mcp.types import CallToolResult

from tests.conftest import stored_file
from tests.http.conftest import INITIALIZE, MCP_HEADERS, HttpServer, StartServer
from tests.kserve.support import FAST_RETRIES, KServeServer

pytestmark = pytest.mark.anyio


def slow_server(start_server: StartServer, delay_ms: int, drain: int) -> HttpServer:
    return start_server(
        config={
            "server.http": {"drain_timeout": drain},
            "backends.placeholder": {"delay_ms": delay_ms},
        },
        args=["--log-level", "info"],
    )


async def call_during_sigterm(server: HttpServer) -> tuple[Any, Any]:
    """Start a slow generation, SIGTERM once it runs, then try a new request.

    Returns the first call's result (or the exception it raised) and the late
    request's response (or the exception it raised).
    """
    running = anyio.Event()
    outcome: dict[str, Any] = {}

    async def on_progress(done: float, total: float | None, msg: str | None) -> None:
        running.set()

    async def slow_call() -> None:
        try:
            async with server.session(terminate_on_close=False) as session:
                # The client validates results against the tools' output schemas,
                # listing tools first if it has not: a request after SIGTERM.
                await session.list_tools()
                outcome["first"] = await session.call_tool(
                    "generate_image",
                    {"prompt": "slow", "width": 64, "height": 64, "steps": 4},
                    progress_callback=on_progress,
                )
        except Exception as exc:  # the call cut short: reported to the test
            outcome.setdefault("first", exc)

    async with anyio.create_task_group() as group:
        group.start_soon(slow_call)
        await running.wait()
        server.process.send_signal(signal.SIGTERM)
        try:
            async with httpx.AsyncClient() as client:
                outcome["late"] = await client.post(
                    server.url, json=INITIALIZE, headers=MCP_HEADERS
                )
        except httpx.TransportError as exc:
            outcome["late"] = exc
    return outcome["first"], outcome["late"]


def assert_refused(late: Any) -> None:
    """A request after SIGTERM is refused: a clear JSON-RPC error, or no connection.

    Which one depends on how far uvicorn's shutdown got: the listener closed
    (connection refused), or a connection the kernel accepted just before that,
    which uvicorn closes unanswered as it shuts down (seen as a read error).
    Either way the request is never served.
    """
    if isinstance(late, httpx.Response):
        assert late.status_code == 503, late.text
        assert late.json()["error"]["message"] == "server is shutting down"
    else:
        assert isinstance(
            late, httpx.ConnectError | httpx.ReadError | httpx.RemoteProtocolError
        ), repr(late)


async def test_sigterm_lets_the_running_call_finish_refuses_new_ones_and_exits_0(
    start_server: StartServer,
) -> None:
    server = slow_server(start_server, delay_ms=400, drain=30)

    with anyio.fail_after(60):
        first, late = await call_during_sigterm(server)
        code = await anyio.to_thread.run_sync(server.process.wait, 30)

    assert isinstance(first, CallToolResult), repr(first)
    assert not first.is_error, first.content
    assert_refused(late)
    assert code == 0, server.log_text()
    [image_id] = [i["id"] for i in first.structured_content["images"]]  # type: ignore[index]
    assert stored_file(server.images, image_id, "png").is_file()
    assert "drain_started" in server.log_text()


async def test_sigterm_cancels_a_call_still_running_after_the_drain_timeout(
    start_server: StartServer,
) -> None:
    # 4 steps of 2.5 s: SIGTERM after the first, so 7.5 s are left; drain is 1 s.
    server = slow_server(start_server, delay_ms=2500, drain=1)

    with anyio.fail_after(60):
        first, late = await call_during_sigterm(server)
        code = await anyio.to_thread.run_sync(server.process.wait, 30)

    assert not isinstance(first, CallToolResult) or first.is_error, first
    assert_refused(late)
    assert code == 0, server.log_text()
    # Nothing half-written: no image, no record, no temporary file.
    leftovers = [p for p in server.images.rglob("*") if p.is_file()]
    assert leftovers == []
    assert "drain_timeout_exceeded" in server.log_text()


@pytest.mark.kserve
async def test_sigterm_after_the_drain_cancels_the_kserve_request_and_exits_0(
    start_server: StartServer, kserve_server: KServeServer
) -> None:
    # The predictor would answer after 60 s; the drain allows 1 s. The process
    # can only exit in time if the backend request is cancelled with the call.
    server = start_server(
        config={
            "server.http": {"drain_timeout": 1},
            "generation": {"backend": "slow", "postprocess": []},
            "backends.slow": {
                "type": "kserve",
                "url": kserve_server.url,
                "model": "fault-slow",
                "heartbeat_interval": 0.05,
                "extra_parameters": {"delay": 60},
                **FAST_RETRIES,
            },
        },
        args=["--log-level", "info"],
    )

    with anyio.fail_after(45):
        first, late = await call_during_sigterm(server)
        code = await anyio.to_thread.run_sync(server.process.wait, 30)

    assert not isinstance(first, CallToolResult) or first.is_error, first
    assert_refused(late)
    assert code == 0, server.log_text()
    assert [p for p in server.images.rglob("*") if p.is_file()] == []
    assert "drain_timeout_exceeded" in server.log_text()


async def test_sigterm_ends_an_idle_stateful_session_stream_without_waiting_the_drain(
    start_server: StartServer,
) -> None:
    # An idle stateful client holds a GET stream open; the drain must not wait
    # the full 60 s for it (the bounded wait below is far shorter).
    server = start_server(
        config={"server.http": {"stateless": False, "drain_timeout": 60}}
    )
    with anyio.fail_after(40):
        async with server.session(terminate_on_close=False) as session:
            await session.list_tools()
            server.process.send_signal(signal.SIGTERM)
            code = await anyio.to_thread.run_sync(server.process.wait, 30)

    assert code == 0, server.log_text()
    assert "drain_timeout_exceeded" not in server.log_text()
