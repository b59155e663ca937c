"""The gallery app end to end in a real headless Chromium.

A minimal host page (``host.js``: the official TypeScript MCP client and the
ext-apps ``AppBridge``) embeds the app served by a real ``serve --transport
http`` subprocess; ``drive.mjs`` drives it with playwright-core and reports what
it saw. Screenshots go to the test's tmp folder (``app-screens``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest

from tests.http.conftest import StartServer
from tests.node.tools import NodeTools

pytestmark = pytest.mark.anyio

DRIVER = Path(__file__).with_name("drive.mjs")
#: One browser session: generous for two cores shared by several test runs.
DRIVER_TIMEOUT = 300


async def test_gallery_generates_regenerates_varies_transforms_and_deletes_in_chromium(
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
    # Reported, not asserted (docs/app.md quotes them): size and first render.
    print(f"\ngallery app: {json.dumps(seen['speed'])}")

    assert seen["host"]["uri"] == "ui://mcp-imagegen/gallery"
    # The resource asks for clipboard-write; the host granted it to the frame.
    assert seen["host"]["allow"] == "clipboard-write"
    assert seen["theme"] == "dark"
    generated = seen["generated"]
    assert len(generated) == 2
    assert sorted(seen["afterGenerate"]) == sorted(generated)
    # Styled: the card shows the caller's words and the style, not the template.
    assert (
        seen["alts"]
        == ["Generated image (watercolor style): a red lighthouse at dusk"] * 2
    )
    assert [card["prompt"] for card in seen["cards"]] == [
        "a red lighthouse at dusk"
    ] * 2
    assert sorted(card["facts"] for card in seen["cards"]) == [
        "seed 11 · 64×64 · placeholder · style watercolor",
        "seed 12 · 64×64 · placeholder · style watercolor",
    ]

    [third] = set(seen["afterNewSeed"]) - set(generated)
    assert seen["afterNewSeed"][0] == third  # newest first
    [same] = set(seen["afterSameSeed"]) - set(seen["afterNewSeed"])
    assert seen["afterSameSeed"][0] == same
    assert seen["sameSeedFacts"] == "seed 11 · 64×64 · placeholder · style watercolor"

    assert seen["copyStatus"] == "Prompt copied"
    assert seen["clipboard"] == "a red lighthouse at dusk"

    recipe = dict(seen["recipe"])
    assert recipe["Id"] == third and recipe["Style"] == "watercolor"
    assert "a red lighthouse at dusk" in recipe["Prompt"]
    assert recipe["Size"] == "64×64" and recipe["Seed"] != "11"
    # Opened twice, read once: the second open shows the cached full image.
    assert seen["reads"] == [f"image://{third}"]

    [variation] = set(seen["afterVariation"]) - set(seen["afterSameSeed"])
    assert seen["afterVariation"][0] == variation
    lineage = dict(seen["variationRecipe"])
    assert lineage["Id"] == variation and lineage["Made from"] == third
    assert lineage["Strength"] == "0.35"
    # Following the lineage link opened the source without reading it again.
    assert seen["readsAfterSource"] == [f"image://{third}", f"image://{variation}"]

    assert seen["formats"] == ["png", "jpeg", "webp"]
    [transformed] = set(seen["afterTransform"]) - set(seen["afterVariation"])
    assert seen["afterTransform"][0] == transformed

    # Keyboard only: focus starts on Cancel and Tab / Shift+Tab never leave the
    # dialog; Escape gives focus back to the Delete button that opened it.
    victim = generated[1]
    assert seen["trap"] == [
        "confirm-no",
        "confirm-yes",
        "confirm-no",
        "confirm-yes",
        "confirm-no",
        "confirm-yes",
    ]
    assert seen["focusAfterCancel"] == f"delete:{victim}"
    assert seen["deleted"] == victim
    assert seen["afterDelete"] == [transformed, variation, same, third, generated[0]]
    # The next image's thumbnail takes the focus of the removed button.
    assert seen["focusAfterDelete"] == f"details:{generated[0]}"
    assert seen["errors"] == []
    # What assistive technology is given (Playwright's ARIA snapshots, kept
    # beside the screenshots): named landmarks, headings, controls, no bare image.
    aria = "\n\n".join(seen[key] for key in ("aria", "ariaDetail", "ariaDialog"))
    (screens / "aria.yaml").write_text(aria)
    assert '- heading "5 images" [level=1]' in seen["aria"]
    # Every card: the variation kept its source's style (and its transform too),
    # so each shows the caller's words.
    assert seen["aria"].count('- article "a red lighthouse at dusk":') == 5
    assert seen["aria"].count("[level=2]") == 5  # one heading per card
    assert not re.search(r"- (article|img|button|region)( \[|:|$)", aria, re.M)
    for line in (
        '- region "Image details":',
        '- heading "Image details" [level=2]',
        '- slider "Strength": "0.35"',
        '- combobox "Step":',
        '- combobox "Format":',
        '- button "Variation"',
        "- term: Made from",
        f'- button "Open the source image {third}"',
    ):
        assert line in seen["ariaDetail"], line
    assert "- status" not in seen["ariaDetail"]
    dialog = 'dialog "Delete this image? Generated image (watercolor style): a red '
    assert dialog in seen["ariaDialog"].splitlines()[0]
    assert '- button "Delete"\n  - button "Cancel"' in seen["ariaDialog"]
    for name in ("gallery.png", "detail.png", "variation.png", "gallery-narrow.png"):
        assert (screens / name).read_bytes().startswith(b"\x89PNG"), name

    # The server agrees: the app's calls really went through the bridge.
    async with server.session() as session:
        listed = await session.call_tool("list_images", {"limit": 10})
        infos = {}
        for image_id in (generated[0], third, same, variation, transformed):
            made = await session.call_tool("get_image", {"image_id": image_id})
            assert made.structured_content is not None
            infos[image_id] = made.structured_content
    assert listed.structured_content is not None
    ids = [image["id"] for image in listed.structured_content["images"]]
    assert sorted(ids) == sorted(seen["afterDelete"])
    original = infos[generated[0]]
    # Regenerating and varying kept the style and sent the caller's words (not
    # re-wrapped); the transform of the variation inherits it.
    for image_id in (third, same, variation, transformed):
        assert infos[image_id]["style"] == "watercolor"
        assert infos[image_id]["prompt"] == original["prompt"]
        assert infos[image_id]["negative_prompt"] == original["negative_prompt"]
    assert infos[same]["seed"] == original["seed"] == 11
    assert infos[variation]["source_image_id"] == third
    assert infos[variation]["parameters"]["strength"] == 0.35
    assert infos[transformed]["mime_type"] == "image/jpeg"
    assert infos[transformed]["source_image_id"] == variation
