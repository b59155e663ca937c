"""Who may reach the HTTP transport: the exposure check and DNS-rebinding settings."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from mcp.server.transport_security import TransportSecuritySettings

from mcp_imagegen._config import HttpSettings, Settings
from mcp_imagegen._http.auth import auth_enabled

#: Host and Origin patterns of the loopback interface (``:*``: any port).
LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


def is_loopback(host: str) -> bool:
    """True when ``host`` (a bind address or name) is this machine only.

    Only ``localhost`` and loopback addresses count: any other name may resolve
    to a public interface.
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_problem(settings: Settings, *, allow_unauthenticated: bool) -> str | None:
    """The one-line refusal for serving unauthenticated beyond loopback, if any.

    Args:
        settings: The configuration (``server.http.host``, ``[server.auth]``).
        allow_unauthenticated: ``--allow-unauthenticated`` was given.

    Returns:
        ``None`` when serving is safe or explicitly allowed, else the message.
    """
    host = settings.server.http.host
    if is_loopback(host) or auth_enabled(settings) or allow_unauthenticated:
        return None
    return (
        f"mcp-imagegen: refusing to serve HTTP on {host} without authentication: "
        "anyone who can reach it could generate and delete images; set [server.auth] "
        "mode, bind to 127.0.0.1, or pass --allow-unauthenticated (only behind a "
        "trusted proxy or network)."
    )


def transport_security(http: HttpSettings) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding protection for ``http``.

    Accepted Host and Origin headers: the loopback names when bound to loopback,
    ``public_url``'s host and origin when set, ``allowed_hosts`` /
    ``allowed_origins``, and the ``cors_origins`` pages may call from. Bound
    elsewhere with none of these, every MCP request is refused (421): the
    server cannot guess its public names.
    """
    hosts: list[str] = list(http.allowed_hosts)
    origins: list[str] = [*http.allowed_origins, *http.cors_origins]
    if is_loopback(http.host):
        hosts += LOOPBACK_HOSTS
        origins += LOOPBACK_ORIGINS
    if http.public_url:
        parts = urlsplit(http.public_url)
        # netloc has no credentials (validated); without a port, browsers and
        # proxies send the bare name, and a proxy may add its own port.
        hosts.append(parts.netloc)
        if parts.port is None:
            hosts.append(f"{parts.netloc}:*")
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )
