"""``serve --transport http``: MCP over streamable HTTP, run by uvicorn.

Built on the SDK's streamable HTTP app; this package adds the health endpoints,
the drain on SIGTERM, the exposure check and authentication (``auth``).
"""

from mcp_imagegen._http.app import Lifecycle, build_app, readiness
from mcp_imagegen._http.auth import auth_enabled
from mcp_imagegen._http.safety import (
    exposure_problem,
    is_loopback,
    transport_security,
)
from mcp_imagegen._http.serve import loop_options, serve_http, tls_options

__all__ = [
    "Lifecycle",
    "auth_enabled",
    "build_app",
    "exposure_problem",
    "is_loopback",
    "loop_options",
    "readiness",
    "serve_http",
    "tls_options",
    "transport_security",
]
