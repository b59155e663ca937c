"""The configuration example of docs/styles.md does what the page says."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import mcp
import pytest

from mcp_imagegen._config import Settings
from mcp_imagegen._styles import builtin_styles

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[2] / "docs" / "styles.md"


def toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOC.read_text(), re.S)


async def test_the_styles_md_example_adds_overrides_and_switches_off(
    connect: Callable[..., mcp.Client],
) -> None:
    example = tomllib.loads(toml_blocks()[0])
    # The example's "sdxl" instance, as an offline placeholder.
    example["backends"] = {"sdxl": {"type": "placeholder"}}

    async with connect(example) as client:
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        result = await client.call_tool(
            "generate_image", {"prompt": "a fox", "style": "photo", "height": 512}
        )
        poster = await client.call_tool(
            "generate_image", {"prompt": "a fox", "style": "poster"}
        )

    assert "poster" in prompts and "pixel-art" not in prompts
    assert result.structured_content is not None
    [image] = result.structured_content["images"]
    assert image["backend"] == "sdxl"
    assert (image["width"], image["height"]) == (768, 512)
    assert image["prompt"] == builtin_styles()["photo"].apply("a fox")
    assert poster.structured_content is not None
    [image] = poster.structured_content["images"]
    assert (image["width"], image["height"]) == (512, 768)


def test_the_styles_md_builtin_switch_is_a_valid_setting(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(tomllib.loads(toml_blocks()[1]))

    assert settings.generation.builtin_styles is False
