"""The gallery's pure script logic, extracted from the shipped HTML and run by Node 22.

The ``<script id="logic">`` block touches neither the DOM nor the bridge, so
its functions run here as they run in the browser, called with JSON arguments.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.node.tools import NodeTools, node_tools

HTML = Path(__file__).parents[2] / "core" / "mcp_imagegen" / "app" / "gallery.html"

RUNNER = """
const [source, input] = process.argv.slice(-2);
const logic = new Function(source + "\\nreturn GalleryLogic;")();
const calls = JSON.parse(input);
const out = calls.map(([name, ...args]) => {
  try {
    // newSeed takes a random source: pass the number it should return.
    if (name === "newSeed") return { ok: logic.newSeed(() => args[0], args[1]) };
    return { ok: logic[name](...args) };
  } catch (error) {
    return { error: `${error.name}: ${error.message}` };
  }
});
console.log(JSON.stringify(out));
"""

INFO: dict[str, Any] = {
    "id": "a1",
    "uri": "image://a1",
    "prompt": "a fox in snow",
    "negative_prompt": None,
    "seed": 42,
    "width": 512,
    "height": 384,
    "backend": "sdxl",
    "model": "sd-xl",
    "steps": 20,
    "guidance_scale": None,
    "postprocess": ["upscale"],
    "parameters": {"style": "watercolor"},
    "mime_type": "image/webp",
    "byte_size": 1000,
    "created_at": "2026-01-01T00:00:00+00:00",
    "source_image_id": None,
}
#: The server's style templates, as its page configuration carries them.
STYLES = {
    "ink": {
        "prompt": "ink drawing of {prompt}, bold lines",
        "negative_prompt": "color",
    },
    "twice": {"prompt": "{prompt}, then {prompt} again", "negative_prompt": None},
}
#: A record made with style="ink": the prompt and negative prompt as expanded.
STYLED: dict[str, Any] = {
    **INFO,
    "prompt": "ink drawing of a fox in snow, bold lines",
    "negative_prompt": "blurry, color",
    "parameters": {},
    "style": "ink",
}


@pytest.fixture(scope="module")
def tools() -> NodeTools:
    return node_tools()


def run(tools: NodeTools, tmp_path: Path, *calls: list[Any]) -> list[Any]:
    match = re.search(r'<script id="logic">(.*?)</script>', HTML.read_text(), re.S)
    assert match is not None, "gallery.html has no <script id=logic> block"
    done = subprocess.run(
        [
            str(tools.node_bin / "node"),
            "-e",
            RUNNER,
            match.group(1),
            json.dumps(calls),
        ],
        env=tools.env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    results: list[Any] = json.loads(done.stdout)
    return results


def test_card_facts_alt_text_and_recipe(tools: NodeTools, tmp_path: Path) -> None:
    long_prompt = {**INFO, "prompt": "x" * 300, "parameters": {}, "seed": None}
    facts, bare, alt, cut, recipe = run(
        tools,
        tmp_path,
        ["factsOf", INFO],
        ["factsOf", long_prompt],
        ["altOf", INFO],
        ["altOf", long_prompt],
        ["recipeOf", INFO],
    )
    assert facts["ok"] == "seed 42 · 512×384 · sdxl · style watercolor"
    assert bare["ok"] == "seed random · 512×384 · sdxl"
    assert alt["ok"] == "Generated image (watercolor style): a fox in snow"
    assert len(cut["ok"]) == len("Generated image: ") + 250
    assert cut["ok"].endswith("…")
    rows = dict(recipe["ok"])
    # An older record kept the style among the parameters: still shown.
    assert rows["Style"] == "watercolor" and rows["Post-processing"] == "upscale"
    assert "Negative prompt" not in rows and "Guidance" not in rows
    [varied] = run(
        tools,
        tmp_path,
        [
            "recipeOf",
            {**INFO, "source_image_id": "s0", "parameters": {"strength": 0.35}},
        ],
    )
    rows = dict(varied["ok"])
    assert rows["Made from"] == "s0" and rows["Strength"] == "0.35"


def test_styled_records_show_and_regenerate_the_callers_words(
    tools: NodeTools, tmp_path: Path
) -> None:
    twice = {**STYLED, "prompt": "a fox, then a fox again", "style": "twice"}
    changed = {**STYLED, "prompt": "old template: a fox"}
    only_style = {**STYLED, "negative_prompt": "color"}
    (facts, alt, shown, own, both, gone, bare, args, plain, unknown) = run(
        tools,
        tmp_path,
        ["factsOf", STYLED],
        ["altOf", STYLED, STYLES],
        ["promptOf", STYLED, STYLES],
        ["unstyle", STYLED, STYLES],
        ["unstyle", twice, STYLES],
        ["unstyle", changed, STYLES],
        ["unstyle", only_style, STYLES],
        ["regenerateArgs", STYLED, 5, ["png"], STYLES],
        ["regenerateArgs", changed, 5, ["png"], STYLES],
        ["regenerateArgs", STYLED, 5, ["png"], {}],
    )
    assert facts["ok"] == "seed 42 · 512×384 · sdxl · style ink"
    assert alt["ok"] == "Generated image (ink style): a fox in snow"
    assert shown["ok"] == "a fox in snow"
    assert own["ok"] == {
        "prompt": "a fox in snow",
        "negative_prompt": "blurry",
        "style": "ink",
    }
    assert both["ok"] == {
        "prompt": "a fox",
        "negative_prompt": "blurry, color",
        "style": "twice",
    }
    # The template changed since: the record's words stay as they are.
    assert gone["ok"] is None
    assert bare["ok"]["negative_prompt"] is None
    # Named with the style again: the server wraps the caller's words once.
    assert args["ok"]["style"] == "ink" and args["ok"]["prompt"] == "a fox in snow"
    assert args["ok"]["negative_prompt"] == "blurry" and args["ok"]["seed"] == 5
    # Without a usable template: the expanded prompt, no style (same picture).
    for fallback, record in ((plain, changed), (unknown, STYLED)):
        assert "style" not in fallback["ok"]
        assert fallback["ok"]["prompt"] == record["prompt"]
        assert fallback["ok"]["negative_prompt"] == "blurry, color"


def test_action_arguments(tools: NodeTools, tmp_path: Path) -> None:
    same, png_only, variation, bad, transform, nothing = run(
        tools,
        tmp_path,
        ["regenerateArgs", INFO, 42, ["png", "jpeg", "webp"]],
        ["regenerateArgs", INFO, 7, ["png"]],
        ["variationArgs", INFO, "0.35", 9],
        ["variationArgs", INFO, "0", 9],
        ["transformArgs", INFO, "", "png"],
        ["transformArgs", INFO, "", ""],
    )
    assert same["ok"] == {
        "prompt": "a fox in snow",
        "width": 512,
        "height": 384,
        "num_images": 1,
        "seed": 42,
        "backend": "sdxl",
        "postprocess": ["upscale"],
        "steps": 20,
        "output_format": "webp",
    }
    # A format the server does not offer is left to the server's default.
    assert "output_format" not in png_only["ok"] and png_only["ok"]["seed"] == 7
    assert variation["ok"] == {
        "image": "a1",
        "prompt": "a fox in snow",
        "strength": 0.35,
        "seed": 9,
        "width": 512,
        "height": 384,
        "backend": "sdxl",
        "steps": 20,
    }
    assert bad["error"].startswith("RangeError: strength must be in (0, 1]")
    assert transform["ok"] == {
        "image_id": "a1",
        "postprocess": [],
        "output_format": "png",
    }
    assert nothing["error"] == "Error: choose a step or a format"


def test_results_previews_and_lists(tools: NodeTools, tmp_path: Path) -> None:
    result = {
        "content": [
            {"type": "image", "data": "QUJD", "mimeType": "image/png"},
            {"type": "resource_link", "uri": "image://a1", "name": "a1"},
            {"type": "resource_link", "uri": "image://b2", "name": "b2"},
            {"type": "text", "text": "2 images"},
        ],
        "structuredContent": {"images": [INFO, {**INFO, "id": "b2"}]},
    }
    failed = {"isError": True, "content": [{"type": "text", "text": "bad width"}]}
    read = {"contents": [{"uri": "image://a1", "mimeType": "image/png", "blob": "QQ"}]}
    (previews, images, one, error, ok, url, merged, left) = run(
        tools,
        tmp_path,
        ["previewsOf", result],
        ["imagesOf", result],
        ["imagesOf", {"structuredContent": INFO}],
        ["errorOf", failed],
        ["errorOf", result],
        ["dataUrlOf", read],
        ["merge", [{"id": "a1"}, {"id": "c3"}], [{"id": "b2"}, {"id": "a1"}]],
        ["without", [{"id": "a1"}, {"id": "b2"}], "a1"],
    )
    # b2 had no preview (over the inline budget): it gets none, not a1's.
    assert previews["ok"] == {"a1": "data:image/png;base64,QUJD"}
    assert [i["id"] for i in images["ok"]] == ["a1", "b2"]
    assert [i["id"] for i in one["ok"]] == ["a1"]
    assert error["ok"] == "bad width" and ok["ok"] is None
    assert url["ok"] == "data:image/png;base64,QQ"
    assert [i["id"] for i in merged["ok"]] == ["b2", "a1", "c3"]
    assert left["ok"] == [{"id": "b2"}]


def test_seeds_theme_and_config(tools: NodeTools, tmp_path: Path) -> None:
    top, repeat, dark, light, config, broken = run(
        tools,
        tmp_path,
        ["newSeed", 0.9999999999, None],
        ["newSeed", 0, 0],
        ["themeOf", {"theme": "dark"}],
        ["themeOf", {}],
        [
            "configOf",
            '{"tools": ["generate_image", 3], "steps": ["upscale"], "styles": '
            '{"ink": {"prompt": "ink {prompt}", "negative_prompt": null}, "bad": 3}}',
        ],
        ["configOf", "not json"],
    )
    assert 0 <= top["ok"] <= 2**32 - 1
    assert repeat["ok"] == 1  # never the seed the image already has
    assert dark["ok"] == "dark" and light["ok"] == "light"
    assert config["ok"] == {
        "tools": ["generate_image"],
        "steps": ["upscale"],
        "formats": [],
        "styles": {"ink": {"prompt": "ink {prompt}", "negative_prompt": None}},
    }
    assert broken["ok"] == {"tools": [], "steps": [], "formats": [], "styles": {}}


def test_a_variation_of_a_styled_image_keeps_its_style(
    tools: NodeTools, tmp_path: Path
) -> None:
    styled, unstyled = run(
        tools,
        tmp_path,
        ["variationArgs", STYLED, "0.5", 3, STYLES],
        ["variationArgs", STYLED, "0.5", 3, {}],
    )
    # Named with the style again and the caller's words: the server wraps them once.
    assert styled["ok"]["style"] == "ink"
    assert styled["ok"]["prompt"] == "a fox in snow"
    assert styled["ok"]["negative_prompt"] == "blurry"
    assert styled["ok"]["image"] == STYLED["id"] and styled["ok"]["strength"] == 0.5
    # Without the server's templates: the expanded prompt as recorded, no style.
    assert "style" not in unstyled["ok"]
    assert unstyled["ok"]["prompt"] == STYLED["prompt"]
