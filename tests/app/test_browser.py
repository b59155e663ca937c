"""The gallery app end to end in a real headless Chromium.

A minimal host page (``host.js``: the official TypeScript MCP client and the
ext-apps ``AppBridge``) embeds the app served by a real ``serve --transport
http`` subprocess; ``drive.mjs`` drives it with playwright-core and reports what
it saw. Screenshots go to the test's tmp folder (``app-screens``).
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tests.http.conftest import StartServer
from tests.node.tools import NodeTools

pytestmark = pytest.mark.anyio

DRIVER = Path(__file__).with_name("drive.mjs")
#: One browser session: generous for two cores shared by several test runs.
DRIVER_TIMEOUT = 300


async def test_gallery_generates_regenerates_shows_transforms_and_deletes_in_chromium(
    start_server: StartServer,
    app_node_tools: NodeTools,
    chromium: Path,
    tmp_path: Path,
) -> None:
    server = start_server()
    screens = tmp_path / "app-screens"
    screens.mkdir()
    env = {**app_node_tools.env(tmp_path), "NODE_TOOLS": str(app_node_tools.prefix)}
    node = str(app_node_tools.node_bin / "node")
    # A bound, not a speed check: a wedged browser must not hang the suite.
    with anyio.fail_after(DRIVER_TIMEOUT):
        done = await anyio.run_process(
            [node, str(DRIVER), server.base, str(screens)], env=env, check=False
        )
    stdout, stderr = done.stdout.decode(), done.stderr.decode(errors="replace")
    lines = stdout.strip().splitlines()
    assert lines, f"driver printed nothing:\n{stderr}\n{server.log_text()}"
    seen = json.loads(lines[-1])
    assert done.returncode == 0, f"{seen.get('failure')}\n{stderr[-3000:]}"

    assert seen["host"]["uri"] == "ui://mcp-imagegen/gallery"
    assert seen["theme"] == "dark"
    generated = seen["generated"]
    assert len(generated) == 2
    assert sorted(seen["afterGenerate"]) == sorted(generated)
    assert seen["alts"] == ["Generated image: a red lighthouse at dusk"] * 2
    [third] = set(seen["afterNewSeed"]) - set(generated)
    assert seen["afterNewSeed"][0] == third  # newest first
    recipe = dict(seen["recipe"])
    assert recipe["Id"] == third and recipe["Prompt"] == "a red lighthouse at dusk"
    assert recipe["Size"] == "64×64" and recipe["Seed"] != "11"
    assert seen["formats"] == ["png", "jpeg", "webp"]
    [transformed] = set(seen["afterTransform"]) - set(seen["afterNewSeed"])
    assert seen["afterTransform"][0] == transformed
    assert seen["deleted"] == generated[1]
    assert seen["afterDelete"] == [transformed, third, generated[0]]
    assert seen["errors"] == []
    for name in ("gallery.png", "detail.png", "gallery-narrow.png"):
        assert (screens / name).read_bytes().startswith(b"\x89PNG"), name

    # The server agrees: the app's calls really went through the bridge.
    async with server.session() as session:
        listed = await session.call_tool("list_images", {"limit": 10})
        made = await session.call_tool("get_image", {"image_id": transformed})
    assert listed.structured_content is not None
    ids = [image["id"] for image in listed.structured_content["images"]]
    assert sorted(ids) == sorted([transformed, third, generated[0]])
    assert made.structured_content is not None
    assert made.structured_content["mime_type"] == "image/jpeg"
    assert made.structured_content["source_image_id"] == third
