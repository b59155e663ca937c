"""Composition root: settings + plugins → service → MCP server."""

from __future__ import annotations

import structlog

from mcp_imagegen.config import Settings
from mcp_imagegen.logs import configure_logging
from mcp_imagegen.plugins import PluginManager, load_plugins
from mcp_imagegen.server import ImageGenServer, build_mcp_server
from mcp_imagegen.service import ImageService


def create_server(
    settings: Settings, plugins: PluginManager | None = None
) -> ImageGenServer:
    """Build the whole server for ``settings``.

    Components are constructed (and their settings validated) now; they start when
    the server's lifespan begins, i.e. when a client connects.

    Raises:
        ConfigurationError: for any invalid setting or unknown component.
    """
    if not structlog.is_configured():
        # structlog's default writes to stdout, which is the stdio protocol.
        configure_logging(settings.logging)
    if plugins is None:
        plugins = load_plugins(settings.plugins.disabled)
    service = ImageService.from_settings(settings, plugins)
    server = build_mcp_server(service)
    plugins.register_tools(server, service)
    return server
