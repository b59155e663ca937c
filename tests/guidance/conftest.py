"""Fixtures of the guidance tests: in-memory clients and a real style plugin."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mcp
import pytest

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import DISABLE_ENV_VAR, PluginManager, load_plugins
from tests.http import conftest as http_fixtures

#: ``serve --transport http`` child processes, as the HTTP tests start them.
start_server = http_fixtures.start_server


@pytest.fixture
def connect(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., mcp.Client]:
    """Return a factory of in-memory clients of a fresh server for some settings."""

    def client(
        data: dict[str, Any] | None = None, plugins: PluginManager | None = None
    ) -> mcp.Client:
        return mcp.Client(create_server(make_settings(data), plugins or plugin_manager))

    return client


#: The style a plugin package contributes in these tests.
NEON_PLUGIN = '''
    """A third-party package contributing one style."""

    from mcp_imagegen import Style, hookimpl


    @hookimpl
    def register_styles(register):
        register(
            "neon",
            Style(
                description="Glowing neon sign on a dark brick wall.",
                prompt="neon sign of {prompt}, glowing tubes, dark brick wall",
                negative_prompt="daylight",
                width=128,
                height=64,
                guidance_scale=8.0,
            ),
        )
'''


def write_plugin(site: Path, module: str, source: str) -> Path:
    """Write an installed-looking distribution (package + dist-info) into ``site``.

    ``importlib.metadata`` finds its ``mcp_imagegen`` entry point on
    ``sys.path`` exactly as it finds a pip-installed plugin's.
    """
    package = site / module
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(source))
    dist_name = module.replace("_", "-")
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[mcp_imagegen]\n{module} = {module}\n")
    return site


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    """A folder holding the ``imagegen_neon`` plugin distribution."""
    return write_plugin(tmp_path / "site", "imagegen_neon", NEON_PLUGIN)


@pytest.fixture
def installed(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[[Path], PluginManager]]:
    """Put a plugin folder on ``sys.path``; return every plugin loaded from it."""
    added: list[str] = []
    monkeypatch.delenv(DISABLE_ENV_VAR, raising=False)

    def install(site: Path) -> PluginManager:
        monkeypatch.syspath_prepend(str(site))
        added.extend(p.name for p in site.iterdir() if p.is_dir())
        return load_plugins()

    yield install
    for name in added:
        sys.modules.pop(name, None)
