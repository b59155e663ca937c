"""edit_image's ``style``: the same resolution as generate_image's, recorded."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import mcp
import pytest
from mcp.types import CallToolResult, TextContent

from tests.editing.conftest import picture

pytestmark = pytest.mark.anyio

IMAGE = "data:image/png;base64," + base64.b64encode(picture((96, 64))).decode()
#: A configured style with every default, to see which ones an edit takes.
NIGHT: dict[str, Any] = {
    "styles": {
        "night": {
            "description": "By night.",
            "prompt": "{prompt}, at night, moonlight",
            "negative_prompt": "daylight",
            "width": 512,
            "height": 512,
            "steps": 7,
            "guidance_scale": 3.5,
            "postprocess": [],
        }
    }
}


def info(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    [image] = result.structured_content["images"]
    return dict(image)


async def test_a_style_wraps_the_prompt_and_is_recorded(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect(NIGHT) as client:
        edited = info(
            await client.call_tool(
                "edit_image",
                {
                    "image": IMAGE,
                    "prompt": "a harbour",
                    "negative_prompt": "boats",
                    "style": "night",
                },
            )
        )
        record = await client.call_tool("get_image", {"image_id": edited["id"]})
    assert record.structured_content is not None
    got = record.structured_content
    assert got["style"] == edited["style"] == "night"
    assert got["prompt"] == "a harbour, at night, moonlight"
    assert got["negative_prompt"] == "boats, daylight"
    # The style's defaults fill what the call left out...
    assert (got["steps"], got["guidance_scale"]) == (7, 3.5)
    # ...but not the size: an edit keeps its input's.
    assert (got["width"], got["height"]) == (96, 64)
    assert got["source_image_id"] is None and got["origin"] == "upload"


async def test_explicit_arguments_win_over_the_style(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect(NIGHT) as client:
        edited = info(
            await client.call_tool(
                "edit_image",
                {
                    "image": IMAGE,
                    "prompt": "a harbour",
                    "style": "night",
                    "steps": 3,
                    "width": 192,
                },
            )
        )
    assert (edited["width"], edited["height"]) == (192, 128)
    assert edited["steps"] == 3


async def test_an_unknown_style_is_refused_with_the_known_ones(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect(NIGHT) as client:
        result = await client.call_tool(
            "edit_image", {"image": IMAGE, "prompt": "p", "style": "noir"}
        )
    assert result.is_error
    [content] = result.content
    assert isinstance(content, TextContent)
    assert "Unknown style 'noir'" in content.text
    assert "night" in content.text and "watercolor" in content.text


async def test_the_style_argument_lists_the_enabled_styles(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect(NIGHT) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    generate = tools["generate_image"].input_schema["properties"]["style"]
    edit = tools["edit_image"].input_schema["properties"]["style"]

    def names(schema: dict[str, Any]) -> list[str]:
        [text] = [b for b in schema["anyOf"] if b.get("type") == "string"]
        return list(text["enum"])

    assert names(edit) == names(generate)
    assert "night" in names(edit) and "watercolor" in names(edit)
    assert "keeps its input's size" in edit["description"]


@pytest.mark.parametrize("tool", ["generate_image", "edit_image"])
async def test_a_prompt_over_the_limit_with_its_template_says_the_template_counts(
    connect: Callable[..., mcp.Client], tool: str
) -> None:
    # 50 characters fit the limit of 60; the style's template makes them 71.
    prompt = "a harbour with fishing boats and a red lighthouse."
    assert len(prompt) == 50
    arguments = {"prompt": prompt, "style": "night"}
    if tool == "edit_image":
        arguments["image"] = IMAGE
    async with connect({**NIGHT, "limits": {"max_prompt_length": 60}}) as client:
        refused = await client.call_tool(tool, arguments)
        plain = await client.call_tool(tool, {**arguments, "style": None})
    assert refused.is_error
    [content] = refused.content
    assert isinstance(content, TextContent)
    assert "prompt is 71 characters long with style 'night'" in content.text
    assert "template" in content.text and "the limit is 60" in content.text
    assert not plain.is_error, plain.content
