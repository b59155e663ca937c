"""Fixtures of the soak, fault and fuzz tests, and their hypothesis profile.

The hypothesis profile keeps every fuzz test small and repeatable: a fixed number
of examples, derandomized, no per-example deadline (2 shared cores make timing
meaningless), and no example database (runs do not depend on earlier runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp
import pytest
from hypothesis import HealthCheck, settings

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import PluginManager

settings.register_profile(
    "soak",
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

#: Examples per fuzz test; small on purpose (bench/soak.py --scenario fuzz runs more).
FUZZ_EXAMPLES = 60


@pytest.fixture
def connect(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., mcp.Client]:
    """Return a factory of in-memory clients of a fresh server for some settings."""

    def client(data: dict[str, Any] | None = None) -> mcp.Client:
        return mcp.Client(create_server(make_settings(data), plugin_manager))

    return client


# The real KServe test server of tests/kserve, started once per session when a soak
# test needs it (imported, not copied, so both directories run the same server).
from tests.kserve.conftest import kserve_server  # noqa: E402, F401
