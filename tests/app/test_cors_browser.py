"""Browser pages on other origins call the server (``server.http.cors_origins``).

Real headless Chromium enforces CORS: ``cors.mjs`` serves a page under an origin
of the plan's choosing, from a real server on loopback (Chromium lets only
loopback pages reach loopback), and runs the official TypeScript MCP client in
it (``cors_client.js``) against a real ``serve --transport http`` subprocess.
The page's origin is a loopback one other than the server's (``localhost``
against ``127.0.0.1``, another port): the server's own Origin check accepts
those, so what refuses or allows the page is CORS alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.http.conftest import StartServer, free_port
from tests.node.tools import NodeTools

pytestmark = pytest.mark.anyio

DRIVER = Path(__file__).with_name("cors.mjs")
#: A bound, not a speed check: a wedged browser must not hang the suite.
DRIVER_TIMEOUT = 300
TOKEN = "cors-browser-token-5d1e"


async def run_pages(
    plan: list[dict[str, Any]], tools: NodeTools, tmp_path: Path
) -> dict[str, Any]:
    """What each page of ``plan`` saw (``cors.mjs``)."""
    env = {**tools.env(tmp_path), "NODE_TOOLS": str(tools.prefix)}
    node = str(tools.node_bin / "node")
    with anyio.fail_after(DRIVER_TIMEOUT):
        done = await anyio.run_process(
            [node, str(DRIVER), json.dumps(plan)], env=env, check=False
        )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr[-3000:]
    seen: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return seen


async def test_a_listed_origin_uses_the_server_from_chromium_and_others_cannot(
    start_server: StartServer,
    app_node_tools: NodeTools,
    chromium: Path,
    tmp_path: Path,
) -> None:
    page_port, other_port = free_port(), free_port()
    allowed = f"http://localhost:{page_port}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(
        config={
            "server.http": {
                "port": port,
                "cors_origins": [allowed],
                # Sessions: the client must read Mcp-Session-Id to go on.
                "stateless": False,
                "public_url": base,
            },
            "server.auth": {"mode": "bearer"},
        },
        env={"MCP_IMAGEGEN_SERVER__AUTH__TOKENS": TOKEN},
    )
    closed = start_server()  # no cors_origins: the default

    seen = await run_pages(
        [
            {"name": "listed", "origin": allowed, "url": server.url, "token": TOKEN},
            {
                "name": "wrong token",
                "origin": allowed,
                "url": server.url,
                "token": "not-the-token",
            },
            {
                "name": "other port",
                "origin": f"http://localhost:{other_port}",
                "url": server.url,
                "token": TOKEN,
            },
            {"name": "default server", "origin": allowed, "url": closed.url},
        ],
        app_node_tools,
        tmp_path,
    )

    listed = seen["listed"]
    assert "error" not in listed, listed
    assert listed["sessionId"]  # exposed: the browser could read it
    assert {"generate_image", "get_image", "list_images"} <= set(listed["tools"])
    # The image's signed /images link, fetched cross-origin by the page.
    assert listed["image"]["status"] == 200
    assert listed["image"]["type"] == "image/png"
    assert listed["image"]["etag"]  # exposed too
    assert listed["image"]["bytes"] > 0
    # The 401 reaches the page with its body (CORS headers on errors too), not
    # as a network failure (a TypeError).
    refused = seen["wrong token"]
    assert refused["error"].startswith("SdkHttpError"), refused
    assert "invalid_token" in refused["error"]
    # Unlisted origins, and every origin of a server without cors_origins, are
    # stopped by the browser before any request is sent (failed preflight).
    for name in ("other port", "default server"):
        assert seen[name]["error"].startswith("TypeError"), seen[name]
        assert "imageId" not in seen[name]
    assert TOKEN not in server.log_text()
