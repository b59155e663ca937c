"""Backend health: what ``list_backends`` shows about each backend instance."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping

import anyio
import structlog
from pydantic import BaseModel

from mcp_imagegen._concurrency import gather
from mcp_imagegen.errors import MCPImageError
from mcp_imagegen.interfaces import InferenceBackend
from mcp_imagegen.models import Capabilities, Health

log = structlog.get_logger("mcp_imagegen._service")

HEALTH_CHECK_TIMEOUT = 5.0


class BackendInfo(BaseModel):
    """A backend instance as shown by ``list_backends``."""

    name: str
    type: str
    default: bool
    capabilities: Capabilities
    health: Health


async def describe_backends(
    backends: Mapping[str, InferenceBackend], default: str
) -> list[BackendInfo]:
    """Describe every backend instance, checking health concurrently.

    Args:
        backends: The instances by configured name.
        default: The name of the default instance.
    """
    healths = await gather(
        [functools.partial(check_health, b) for b in backends.values()]
    )
    return [
        BackendInfo(
            name=name,
            type=backend.name,
            default=name == default,
            capabilities=backend.capabilities,
            health=health,
        )
        for (name, backend), health in zip(backends.items(), healths, strict=True)
    ]


async def check_health(backend: InferenceBackend) -> Health:
    """Ask one backend for its health, within :data:`HEALTH_CHECK_TIMEOUT`.

    Never raises: a timeout, a typed error or a crash becomes ``unavailable``.
    """
    begun = time.perf_counter()
    try:
        with anyio.fail_after(HEALTH_CHECK_TIMEOUT):
            health = await backend.check_health()
    except TimeoutError:
        health = Health(status="unavailable", detail="health check timed out")
    except MCPImageError as exc:
        health = Health(status="unavailable", detail=str(exc))
    except Exception as exc:
        # A buggy health check must not fail list_backends for every backend.
        # Its message stays in the log: an unexpected error may carry
        # internals (URLs, credentials) the client must not see.
        log.exception("health_check_crashed", backend=backend.instance_name)
        health = Health(
            status="unavailable",
            detail=f"health check failed unexpectedly ({type(exc).__name__}); "
            "the server log has the details",
        )
    if health.latency_ms is None:
        health = health.model_copy(
            update={"latency_ms": round((time.perf_counter() - begun) * 1000, 1)}
        )
    return health
