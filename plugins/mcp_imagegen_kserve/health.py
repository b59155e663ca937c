"""Health of a ``kserve`` backend: the model-ready endpoint, read the server's way."""

from __future__ import annotations

import json
import time

import httpx

from mcp_imagegen import Health
from mcp_imagegen_kserve.failures import (
    RETRYABLE_STATUSES,
    Failures,
    describe_http_error,
    error_text,
)
from mcp_imagegen_kserve.settings import KServeSettings


async def check_ready(
    client: httpx.AsyncClient,
    ready_url: str,
    settings: KServeSettings,
    failures: Failures,
) -> Health:
    """Ask the model-ready endpoint whether the model can serve now.

    ``ok``: ready. ``degraded``: the server answers but the model is not ready
    (loading, scaled to zero). ``unavailable``: unreachable, unknown model,
    refused credentials.

    Args:
        client: The backend's connection pool.
        ready_url: The model-ready endpoint (V1 or V2).
        settings: The backend's settings.
        failures: Words the failures (hints, redaction).
    """
    begun = time.perf_counter()
    try:
        response = await client.get(
            ready_url, timeout=httpx.Timeout(settings.connect_timeout)
        )
    except httpx.HTTPError as exc:
        return Health(
            status="unavailable",
            detail=f"cannot reach {ready_url} ({describe_http_error(exc)})",
        )
    latency = round((time.perf_counter() - begun) * 1000, 1)
    status = response.status_code
    text = error_text(response.content, response.headers.get("content-type"))
    said = f": {text}" if text else ""
    model = settings.model
    if status == 200 and (settings.protocol == "v2" or _v1_ready(response)):
        return Health(
            status="ok",
            detail=f"model '{model}' is ready ({ready_url})",
            latency_ms=latency,
        )
    # Reachable but not ready: 200 with "ready": false (V1), 503 while loading,
    # gateways during scale-from-zero, and Triton's 400 for an unready model.
    triton_not_ready = status == 400 and settings.protocol == "v2"
    if status == 200 or status in RETRYABLE_STATUSES or triton_not_ready:
        return Health(
            status="degraded",
            detail=f"model '{model}' is not ready ({status}{said}); it may be "
            "loading or scaled to zero",
            latency_ms=latency,
        )
    hint = failures.status_hint(status)
    return Health(
        status="unavailable",
        detail=failures.redact(
            f"{ready_url} answered {status}{said}" + (f". {hint}" if hint else "")
        ),
        latency_ms=latency,
    )


def _v1_ready(response: httpx.Response) -> bool:
    """Read ``{"ready": ...}`` of a V1 model-ready answer (absent means ready)."""
    try:
        doc = json.loads(response.content)
    except ValueError:
        return True
    return not (isinstance(doc, dict) and doc.get("ready") is False)
