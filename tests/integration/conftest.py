"""Fixtures of the integration tests (the soak tests import ``connect`` too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp
import pytest

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import PluginManager


@pytest.fixture
def connect(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., mcp.Client]:
    """Return a factory of in-memory clients of a fresh server for some settings."""

    def client(data: dict[str, Any] | None = None) -> mcp.Client:
        return mcp.Client(create_server(make_settings(data), plugin_manager))

    return client
