"""Fixtures of the MCP App tests: Node 22 tools and Debian's chromium."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.http.conftest import start_server  # noqa: F401  (a fixture used here)
from tests.node.tools import INSTALL, PREFIX, REPO, NodeTools, node_tools

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_CHROMIUM = Path(__file__).with_name("install_chromium.sh")
#: The npm packages the app tests need beyond the HTTP tests' tools.
APP_PACKAGES = (
    "playwright-core",
    "esbuild",
    "zod",
    "@modelcontextprotocol/ext-apps",
    "@modelcontextprotocol/client",
)


@pytest.fixture(scope="session")
def app_node_tools() -> NodeTools:
    """Node 22 with playwright-core, esbuild and the ext-apps host bridge.

    An older ``.cache/node22`` (installed before these were added) is brought
    up to date by running the install script again.
    """
    tools = node_tools()
    modules = tools.prefix / "node_modules"
    if any(not (modules / name).is_dir() for name in APP_PACKAGES):
        subprocess.run(["sh", str(INSTALL), str(PREFIX)], cwd=REPO, check=True)
    missing = [name for name in APP_PACKAGES if not (modules / name).is_dir()]
    assert not missing, f"{INSTALL} did not install {missing}"
    return tools


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed by ``make test`` (or here on first use).

    Skips, saying why, only when it cannot be installed (no apt, not root).
    """
    if not CHROMIUM.exists():
        done = subprocess.run(
            ["sh", str(INSTALL_CHROMIUM)], capture_output=True, text=True
        )
        if not CHROMIUM.exists():
            pytest.skip(
                f"chromium is not installed and {INSTALL_CHROMIUM.name} could "
                f"not install it: {(done.stderr or done.stdout).strip()[-500:]}"
            )
    return CHROMIUM
