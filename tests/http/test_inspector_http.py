"""A real external MCP client over streamable HTTP: the MCP Inspector CLI (Node)
against ``mcp-imagegen serve --transport http``, without and with bearer auth.

The Inspector (pinned, with Node 22) comes from ``.cache/node22`` (``make test``);
the stdio counterpart is ``tests/integration/test_inspector.py``.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import stored_file
from tests.http.conftest import HttpServer, StartServer
from tests.node.tools import NodeTools, node_tools

TOKEN = "inspector-token-5c1e8d"


@pytest.fixture
def tools() -> NodeTools:
    return node_tools()


def run_inspector(
    tools: NodeTools, server: HttpServer, home: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run one Inspector CLI method against ``server`` over streamable HTTP."""
    return subprocess.run(
        [
            str(tools.inspector),
            "--cli",
            server.url,
            "--transport",
            "http",
            # Never start an interactive OAuth login (it would wait for a
            # browser): a 401 ends the run with ``auth_required``.
            "--stored-auth-only",
            *args,
        ],
        env=tools.env(home),
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def inspector(tools: NodeTools, server: HttpServer, home: Path, *args: str) -> Any:
    """Run one Inspector CLI method that must succeed; return its JSON."""
    completed = run_inspector(tools, server, home, *args)
    assert completed.returncode == 0, (
        completed.stdout[-2000:] + completed.stderr[-2000:]
    )
    return json.loads(completed.stdout)


def generate_args(prompt: str) -> tuple[str, ...]:
    return (
        "--method",
        "tools/call",
        "--tool-name",
        "generate_image",
        "--tool-arg",
        f"prompt={prompt}",
        "--tool-arg",
        "width=64",
        "--tool-arg",
        "height=64",
        "--tool-arg",
        "inline=none",
    )


def test_inspector_over_http_lists_tools_generates_and_reads_the_resource(
    tools: NodeTools, start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server()
    home = tmp_path / "home"

    listed = inspector(tools, server, home, "--method", "tools/list")
    called = inspector(tools, server, home, *generate_args("a red fox in snow"))
    [link] = [c for c in called["content"] if c["type"] == "resource_link"]
    read = inspector(
        tools, server, home, "--method", "resources/read", "--uri", link["uri"]
    )

    assert "generate_image" in {tool["name"] for tool in listed["tools"]}
    assert called["isError"] is False
    [image] = called["structuredContent"]["images"]
    assert (image["width"], image["height"]) == (64, 64)
    [contents] = read["contents"]
    assert contents["mimeType"] == "image/png"
    stored = stored_file(server.images, link["name"], "png")
    assert base64.b64decode(contents["blob"]) == stored.read_bytes()


def test_inspector_over_http_with_a_bearer_token(
    tools: NodeTools, start_server: StartServer, tmp_path: Path
) -> None:
    server = start_server(
        config={"server.auth": {"mode": "bearer"}},
        env={"MCP_IMAGEGEN_SERVER__AUTH__TOKENS": TOKEN},
    )
    home = tmp_path / "home"
    bearer = ("--header", f"Authorization: Bearer {TOKEN}")

    anonymous = run_inspector(tools, server, home, "--method", "tools/list")
    wrong = run_inspector(
        tools,
        server,
        home,
        "--header",
        "Authorization: Bearer not-the-token",
        "--method",
        "tools/list",
    )
    listed = inspector(tools, server, home, *bearer, "--method", "tools/list")
    called = inspector(tools, server, home, *bearer, *generate_args("a kite"))

    # The Inspector sees the 401 and, told not to log in, gives up.
    for refused in (anonymous, wrong):
        assert refused.returncode != 0
        assert "auth_required" in refused.stdout + refused.stderr
    assert "generate_image" in {tool["name"] for tool in listed["tools"]}
    assert called["isError"] is False
    [link] = [c for c in called["content"] if c["type"] == "resource_link"]
    assert stored_file(server.images, link["name"], "png").is_file()
    assert TOKEN not in server.log_text()
    assert server.process.poll() is None
