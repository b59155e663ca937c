"""The ``style`` argument of generate_image, through a real in-memory MCP session."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp
import pytest
from mcp.types import CallToolResult, TextContent
from PIL import Image

from mcp_imagegen import Capabilities, hookimpl
from mcp_imagegen._plugins import PluginManager
from mcp_imagegen._styles import builtin_styles
from mcp_imagegen_placeholder.backend import PlaceholderBackend
from tests.conftest import stored_file

pytestmark = pytest.mark.anyio

#: A configured style with every default set.
POSTER = {
    "description": "Bold travel poster.",
    "prompt": "vintage travel poster of {prompt}, flat colors",
    "negative_prompt": "photo",
    "width": 128,
    "height": 96,
    "steps": 3,
    "guidance_scale": 4.5,
    "postprocess": [],
}


async def generate(client: mcp.Client, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool("generate_image", arguments)
    assert not result.is_error, result
    assert result.structured_content is not None
    [image] = result.structured_content["images"]
    return dict(image)


async def stored_record(client: mcp.Client, image_id: str) -> dict[str, Any]:
    """The record storage keeps, read back through image://<id>/metadata."""
    result = await client.read_resource(f"image://{image_id}/metadata")
    [contents] = result.contents
    assert isinstance(contents, mcp.types.TextResourceContents)
    return dict(json.loads(contents.text))


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result
    [text] = [b for b in result.content if isinstance(b, TextContent)]
    return text.text


async def test_a_configured_style_applies_its_template_and_every_default(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect({"styles": {"poster": POSTER}}) as client:
        image = await generate(client, prompt="a harbour", style="poster")
        record = await stored_record(client, image["id"])

    assert record["prompt"] == "vintage travel poster of a harbour, flat colors"
    assert record["negative_prompt"] == "photo"
    assert (record["width"], record["height"]) == (128, 96)
    assert record["steps"] == 3
    assert record["guidance_scale"] == 4.5
    assert record["postprocess"] == []  # the style's chain replaced "metadata"
    assert record["style"] == "poster"
    assert image["style"] == "poster"


async def test_explicit_arguments_win_over_the_style_defaults(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect({"styles": {"poster": POSTER}}) as client:
        image = await generate(
            client,
            prompt="a harbour",
            style="poster",
            negative_prompt="people",
            width=64,
            height=192,
            steps=2,
            guidance_scale=9.0,
            postprocess=["metadata"],
        )
        record = await stored_record(client, image["id"])

    assert record["prompt"] == "vintage travel poster of a harbour, flat colors"
    # The caller's negative prompt comes first; the style's still applies.
    assert record["negative_prompt"] == "people, photo"
    assert (record["width"], record["height"]) == (64, 192)
    assert record["steps"] == 2
    assert record["guidance_scale"] == 9.0
    assert record["postprocess"] == ["metadata"]
    assert record["style"] == "poster"


async def test_a_style_backend_is_used_unless_the_call_names_one(
    connect: Callable[..., mcp.Client],
) -> None:
    settings = {
        "backends": {"fast": {"type": "placeholder"}},
        "styles": {"quick": {"prompt": "{prompt}", "backend": "fast"}},
    }
    async with connect(settings) as client:
        by_style = await generate(client, prompt="a cat", style="quick", width=64)
        explicit = await generate(
            client, prompt="a cat", style="quick", width=64, backend="placeholder"
        )

    assert by_style["backend"] == "fast"
    assert explicit["backend"] == "placeholder"


async def test_a_builtin_style_is_recorded_in_the_embedded_recipe(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    async with connect() as client:
        image = await generate(
            client, prompt="a red bicycle", style="watercolor", width=64, height=64
        )
        got = await client.call_tool("get_image", {"image_id": image["id"]})

    watercolor = builtin_styles()["watercolor"]
    assert image["prompt"] == watercolor.apply("a red bicycle")
    assert image["negative_prompt"] == watercolor.negative_prompt
    assert image["guidance_scale"] == watercolor.guidance_scale
    assert got.structured_content is not None
    assert got.structured_content["style"] == "watercolor"
    with Image.open(stored_file(image_dir, image["id"], "png")) as png:
        recipe = json.loads(png.info["mcp-imagegen"])
    assert recipe["style"] == "watercolor"
    assert recipe["prompt"] == watercolor.apply("a red bicycle")


async def test_no_style_records_none_and_keeps_the_prompt(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        image = await generate(client, prompt="a red bicycle", width=64, height=64)

    assert image["prompt"] == "a red bicycle"
    assert image["style"] is None


async def test_an_unknown_style_is_refused_listing_the_known_ones(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    async with connect({"styles": {"poster": POSTER}}) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "a cat", "style": "posterr"}
        )
        # The server keeps serving.
        await generate(client, prompt="a cat", style="poster")

    text = error_text(result)
    assert "Unknown style 'posterr'" in text
    assert "poster, product-shot, watercolor" in text
    assert "photo" in text


async def test_the_style_argument_advertises_the_enabled_styles(
    connect: Callable[..., mcp.Client],
) -> None:
    settings = {
        "generation": {"builtin_styles": False},
        "styles": {"poster": POSTER, "sketch": {"prompt": "sketch of {prompt}"}},
    }
    async with connect(settings) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}

    schema = tools["generate_image"].input_schema["properties"]["style"]
    [text] = [b for b in schema["anyOf"] if b.get("type") == "string"]
    assert text["enum"] == ["poster", "sketch"]
    assert "poster (Bold travel poster)" in schema["description"]


async def test_a_table_overrides_only_the_keys_it_sets_of_a_builtin_style(
    connect: Callable[..., mcp.Client],
) -> None:
    settings = {"styles": {"photo": {"width": 96, "height": 64}}}
    async with connect(settings) as client:
        image = await generate(client, prompt="a fox", style="photo")

    photo = builtin_styles()["photo"]
    assert (image["width"], image["height"]) == (96, 64)
    assert image["prompt"] == photo.apply("a fox")
    assert image["negative_prompt"] == photo.negative_prompt


@pytest.mark.parametrize(
    ("settings", "gone", "kept"),
    [
        ({"styles": {"pixel-art": {"enabled": False}}}, "pixel-art", "photo"),
        (
            {
                "generation": {"builtin_styles": False},
                "styles": {"poster": POSTER},
            },
            "photo",
            "poster",
        ),
    ],
    ids=["one-disabled", "builtins-off"],
)
async def test_switched_off_styles_are_refused_and_not_offered(
    connect: Callable[..., mcp.Client],
    settings: dict[str, Any],
    gone: str,
    kept: str,
) -> None:
    async with connect(settings) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "a cat", "style": gone}
        )
        prompts = {p.name for p in (await client.list_prompts()).prompts}

    assert f"Unknown style '{gone}'" in error_text(result)
    assert gone not in prompts
    assert kept in prompts


class NoNegativeBackend(PlaceholderBackend):
    """A backend that takes no negative prompts (as some KServe models)."""

    name = "no-negative"

    @property
    def capabilities(self) -> Capabilities:
        return super().capabilities.model_copy(
            update={"supports_negative_prompt": False}
        )


class NoNegativePlugin:
    @hookimpl
    def register_backends(self, register: Callable[[type[Any]], None]) -> None:
        register(NoNegativeBackend)


async def test_a_style_negative_prompt_is_left_out_for_a_backend_without_them(
    connect: Callable[..., mcp.Client], plugin_manager: PluginManager
) -> None:
    plugin_manager.register(NoNegativePlugin(), name="no-negative")
    settings = {
        "backends": {"plain": {"type": "no-negative"}},
        "styles": {"poster": {**POSTER, "postprocess": None}},
    }
    async with connect(settings) as client:
        image = await generate(client, prompt="a cat", style="poster", backend="plain")

    assert image["negative_prompt"] is None
    assert image["prompt"] == "vintage travel poster of a cat, flat colors"
