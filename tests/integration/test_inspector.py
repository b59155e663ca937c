"""A real external MCP client: the MCP Inspector CLI (Node) against ``serve``.

Skipped where ``npx`` is missing. On a fresh machine the first call downloads the
Inspector from the npm registry.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MCP_IMAGEGEN_BIN, stored_file

NPX = shutil.which("npx")
pytestmark = pytest.mark.skipif(NPX is None, reason="npx (Node.js) is not installed")


def inspector(config: Path, *args: str) -> Any:
    """Run one Inspector CLI method against ``mcp-imagegen serve``; return its JSON."""
    assert NPX is not None
    completed = subprocess.run(
        [
            NPX,
            "-y",
            "@modelcontextprotocol/inspector",
            "--cli",
            "-e",
            f"MCP_IMAGEGEN_CONFIG={config}",
            str(MCP_IMAGEGEN_BIN),
            "serve",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout)


def test_inspector_lists_tools_generates_and_reads_the_linked_resource(
    tmp_path: Path,
) -> None:
    config = tmp_path / "mcp-imagegen.toml"
    config.write_text(f'[storage.file]\ndirectory = "{tmp_path / "images"}"\n')

    tools = inspector(config, "--method", "tools/list")
    called = inspector(
        config,
        "--method",
        "tools/call",
        "--tool-name",
        "generate_image",
        "--tool-arg",
        "prompt=a red fox in snow",
        "--tool-arg",
        "inline=none",
    )
    [link] = [c for c in called["content"] if c["type"] == "resource_link"]
    read = inspector(config, "--method", "resources/read", "--uri", link["uri"])

    assert "generate_image" in {tool["name"] for tool in tools["tools"]}
    assert called["isError"] is False
    [contents] = read["contents"]
    assert contents["mimeType"] == "image/png"
    stored = stored_file(tmp_path / "images", link["name"], "png")
    assert base64.b64decode(contents["blob"]) == stored.read_bytes()
