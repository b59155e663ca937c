"""Faults the KServe test server cannot produce, injected at the HTTP boundary.

Gateways (502/504 with HTML bodies), DNS failures, broken connections, redirects,
oversized answers and servers that echo credentials are played by an
``httpx.MockTransport``; everything above the transport is the real backend.
"""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import structlog
from PIL import Image

from mcp_imagegen import (
    BackendError,
    BackendNotReadyError,
    BackendRejectedError,
    BackendUnavailableError,
    BadBackendResponseError,
    GenerationRequest,
    ignore_progress,
)
from mcp_imagegen_kserve.backend import KServeBackend
from mcp_imagegen_kserve.settings import KServeSettings
from tests.kserve.support import FAST_RETRIES, ProgressLog

pytestmark = pytest.mark.anyio

URL = "http://kserve.test"
TOKEN = "sekret-token-1234567890"
Reply = httpx.Response | Exception


def png(width: int = 64, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def ok_v1() -> httpx.Response:
    b64 = base64.b64encode(png()).decode()
    return httpx.Response(200, json={"predictions": [{"image": {"b64": b64}}]})


class ScriptedServer:
    """Answers requests with scripted replies, in order; records what it got."""

    def __init__(self, *replies: Reply | Callable[[httpx.Request], Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if callable(reply) and not isinstance(reply, httpx.Response):
            reply = reply(request)
        if isinstance(reply, Exception):
            raise reply
        return reply


@asynccontextmanager
async def scripted_backend(
    server: ScriptedServer, **options: Any
) -> AsyncIterator[KServeBackend]:
    settings = KServeSettings(url=URL, model="sd", **{**FAST_RETRIES, **options})
    backend = KServeBackend(
        settings, instance_name="sdxl", transport=httpx.MockTransport(server)
    )
    async with backend:
        yield backend


def request(**fields: Any) -> GenerationRequest:
    return GenerationRequest(
        **{"prompt": "a cat", "width": 64, "height": 64, "seed": 1, **fields}
    )


async def test_gateway_errors_and_cold_starts_are_retried_until_success() -> None:
    server = ScriptedServer(
        httpx.Response(502, text="<html><body><h1>502 Bad Gateway</h1></body></html>"),
        httpx.Response(503, json={"error": "Model with name sd is not ready."}),
        httpx.Response(504, text="upstream request timeout"),
        ok_v1(),
    )
    async with scripted_backend(server, max_retries=3) as backend:
        [image] = await backend.generate(request(), ignore_progress)

    assert len(server.requests) == 4
    assert image.width == 64


async def test_not_ready_after_every_retry_is_a_not_ready_error() -> None:
    server = ScriptedServer(httpx.Response(503, json={"error": "not ready"}))
    async with scripted_backend(server, max_retries=2) as backend:
        with pytest.raises(BackendNotReadyError) as caught:
            await backend.generate(request(), ignore_progress)

    message = str(caught.value)
    assert len(server.requests) == 3
    assert "sdxl" in message and f"{URL}/v1/models/sd:predict" in message
    assert "503" in message and "Gave up after 3 attempt(s)" in message


async def test_gateway_error_after_every_retry_is_an_unavailable_error() -> None:
    server = ScriptedServer(httpx.Response(502, text="<html>Bad Gateway</html>"))
    async with scripted_backend(server, max_retries=1) as backend:
        with pytest.raises(
            BackendUnavailableError, match="502 Bad Gateway: Bad Gateway"
        ):
            await backend.generate(request(), ignore_progress)

    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 429])
async def test_client_errors_are_never_retried(status: int) -> None:
    server = ScriptedServer(httpx.Response(status, json={"error": "no"}))
    async with scripted_backend(server, max_retries=5) as backend:
        with pytest.raises(BackendRejectedError, match=str(status)):
            await backend.generate(request(), ignore_progress)

    assert len(server.requests) == 1


async def test_predictor_failure_is_a_backend_error_and_not_retried() -> None:
    server = ScriptedServer(
        httpx.Response(500, json={"error": "ValueError : CUDA out of memory"})
    )
    async with scripted_backend(server, max_retries=5) as backend:
        with pytest.raises(BackendError, match=r"500.*CUDA out of memory") as caught:
            await backend.generate(request(), ignore_progress)

    assert type(caught.value) is BackendError
    assert len(server.requests) == 1


async def test_validation_error_detail_is_shown_compactly() -> None:
    detail = [
        {"loc": ["body", "inputs", 0, "shape"], "msg": "Field required", "type": "x"},
        {"loc": ["body", "parameters", "a"], "msg": "Input should be a string"},
    ]
    server = ScriptedServer(httpx.Response(422, json={"detail": detail}))
    async with scripted_backend(server, protocol="v2") as backend:
        with pytest.raises(BackendRejectedError) as caught:
            await backend.generate(request(), ignore_progress)

    message = str(caught.value)
    assert "body.inputs.0.shape: Field required" in message
    assert "prompt_shape" in message  # the hint points at the settings to check


async def test_long_error_bodies_are_truncated() -> None:
    server = ScriptedServer(httpx.Response(400, text="x" * 10_000))
    async with scripted_backend(server) as backend:
        with pytest.raises(BackendRejectedError) as caught:
            await backend.generate(request(), ignore_progress)

    assert len(str(caught.value)) < 600


async def test_dns_failure_is_not_retried() -> None:
    failure = httpx.ConnectError("[Errno -2] Name or service not known")
    failure.__cause__ = socket.gaierror(-2, "Name or service not known")
    server = ScriptedServer(failure)
    async with scripted_backend(server, max_retries=5) as backend:
        with pytest.raises(BackendUnavailableError, match="cannot resolve the host"):
            await backend.generate(request(), ignore_progress)

    assert len(server.requests) == 1


async def test_connection_errors_are_retried() -> None:
    server = ScriptedServer(httpx.ConnectError("Network is unreachable"), ok_v1())
    async with scripted_backend(server, max_retries=1) as backend:
        [image] = await backend.generate(request(), ignore_progress)

    assert len(server.requests) == 2
    assert image.mime_type == "image/png"


async def test_a_connection_lost_mid_answer_is_unavailable_and_not_retried() -> None:
    server = ScriptedServer(
        httpx.RemoteProtocolError("Server disconnected without sending a response.")
    )
    async with scripted_backend(server, max_retries=5) as backend:
        with pytest.raises(BackendUnavailableError, match="connection broke"):
            await backend.generate(request(), ignore_progress)

    assert len(server.requests) == 1


async def test_a_redirect_is_reported_without_following_it_or_its_query() -> None:
    server = ScriptedServer(
        httpx.Response(
            302, headers={"location": "https://sso.example.com/auth?state=s3cr3t"}
        )
    )
    async with scripted_backend(server) as backend:
        with pytest.raises(BackendRejectedError) as caught:
            await backend.generate(request(), ignore_progress)

    message = str(caught.value)
    assert "https://sso.example.com/auth" in message
    assert "s3cr3t" not in message
    assert len(server.requests) == 1


async def test_an_answer_over_max_response_bytes_is_refused() -> None:
    server = ScriptedServer(httpx.Response(200, content=b"{" + b" " * 5000 + b"}"))
    async with scripted_backend(server, max_response_bytes=2048) as backend:
        with pytest.raises(BadBackendResponseError, match="max_response_bytes"):
            await backend.generate(request(), ignore_progress)


async def test_the_token_is_sent_but_never_shown_in_errors_health_or_logs() -> None:
    def echo_headers(request: httpx.Request) -> httpx.Response:
        # A badly behaved server quoting the request headers in its error.
        return httpx.Response(
            401, json={"error": f"bad credentials: {dict(request.headers)}"}
        )

    server = ScriptedServer(echo_headers)
    with structlog.testing.capture_logs() as logs:
        async with scripted_backend(server, token=TOKEN) as backend:
            with pytest.raises(BackendRejectedError) as caught:
                await backend.generate(request(), ignore_progress)
            health = await backend.check_health()

    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in str(caught.value)
    assert "MCP_IMAGEGEN_BACKENDS__SDXL__TOKEN" in str(caught.value)
    assert TOKEN not in health.detail
    assert TOKEN not in json.dumps(logs, default=str)


async def test_host_header_is_sent_when_configured() -> None:
    server = ScriptedServer(ok_v1())
    async with scripted_backend(server, host_header="sd.team.example.com") as backend:
        await backend.generate(request(), ignore_progress)

    assert server.requests[0].headers["host"] == "sd.team.example.com"
    assert server.requests[0].headers["content-type"] == "application/json"


async def test_retries_are_announced_as_progress() -> None:
    server = ScriptedServer(httpx.Response(503, json={"error": "loading"}), ok_v1())
    progress = ProgressLog()
    async with scripted_backend(server, max_retries=2) as backend:
        await backend.generate(request(), progress)

    assert any("retry 1/2" in m for m in progress.messages)
    values = [done for done, _, _ in progress.reports]
    assert values == sorted(values) and len(set(values)) == len(values)


@pytest.mark.parametrize(
    ("status", "health_status"),
    [(200, "ok"), (503, "degraded"), (404, "unavailable"), (401, "unavailable")],
)
async def test_health_maps_the_model_ready_answer(
    status: int, health_status: str
) -> None:
    server = ScriptedServer(
        httpx.Response(status, json={"name": "sd", "ready": status == 200})
    )
    async with scripted_backend(server) as backend:
        health = await backend.check_health()

    assert health.status == health_status
    assert str(server.requests[0].url) == f"{URL}/v1/models/sd"


async def test_health_of_a_v1_model_answering_ready_false_is_degraded() -> None:
    server = ScriptedServer(httpx.Response(200, json={"name": "sd", "ready": False}))
    async with scripted_backend(server) as backend:
        health = await backend.check_health()

    assert health.status == "degraded"


async def test_health_uses_the_v2_model_ready_endpoint() -> None:
    server = ScriptedServer(httpx.Response(200, json={"name": "sd", "ready": True}))
    async with scripted_backend(server, protocol="v2") as backend:
        health = await backend.check_health()

    assert health.ok
    assert str(server.requests[0].url) == f"{URL}/v2/models/sd/ready"
