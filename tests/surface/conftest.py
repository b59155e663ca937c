"""Fixtures of the surface tests: in-memory servers with logging configured."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mcp_imagegen._app import create_server
from mcp_imagegen._config import LoggingSettings, Settings
from mcp_imagegen._logs import configure_logging
from mcp_imagegen._mcp import ImageGenServer
from mcp_imagegen._plugins import PluginManager
from tests.conftest import deep_merge

#: A KServe backend with a token (nothing listens there): nothing may show it.
SECRET = "s3cr3t-pa55"
LEAKY_BACKEND = {
    "type": "kserve",
    "url": "http://127.0.0.1:9/",
    "token": SECRET,
    "model": "m",
    "connect_timeout": 1,
    "max_retries": 0,
}


@pytest.fixture
def debug_logging(restore_logging: None) -> Iterator[None]:
    """The server's stderr log at debug: every event reaches the pipeline."""
    configure_logging(LoggingSettings(level="debug", format="json"))
    yield


@pytest.fixture
def make_server(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., ImageGenServer]:
    """Return a factory of servers for some settings (placeholder + leaky KServe)."""

    def make(data: dict[str, Any] | None = None) -> ImageGenServer:
        base: dict[str, Any] = {"backends": {"leaky": LEAKY_BACKEND}}
        settings = make_settings(deep_merge(base, data or {}))
        server = create_server(settings, plugin_manager)
        assert isinstance(server, ImageGenServer)
        return server

    return make
