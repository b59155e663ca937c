"""The watermark step, checked on real pixels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydantic
import pytest
from PIL import Image

from mcp_imagegen import ConfigurationError, GeneratedImage, ProcessingContext
from mcp_imagegen_imageops.watermark import WatermarkSettings, WatermarkStep
from tests.imageops.conftest import encode, reopen

pytestmark = pytest.mark.anyio

MakeImage = Callable[..., GeneratedImage]


def watermark_step(**options: object) -> WatermarkStep:
    return WatermarkStep(WatermarkSettings.model_validate(options))


def changed_box(before: GeneratedImage, after: GeneratedImage) -> tuple[int, ...]:
    """Bounding box (left, top, right, bottom) of the pixels that differ."""
    a = np.asarray(reopen(before).convert("RGBA")).astype(int)
    b = np.asarray(reopen(after).convert("RGBA")).astype(int)
    rows, cols = np.nonzero(np.abs(a - b).sum(axis=2))
    assert rows.size, "the watermark changed no pixel"
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def flat(colour: tuple[int, int, int], size: int = 256) -> GeneratedImage:
    return encode(Image.new("RGB", (size, size), colour))


async def test_changes_pixels_only_inside_its_region(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    step = watermark_step()
    source = make_image(320, 240)

    result = await step.process(source, context)

    _overlay, region = step.render(reopen(source).convert("RGB"))
    left, top, right, bottom = changed_box(source, result)
    assert region[0] <= left and region[1] <= top
    assert right <= region[2] and bottom <= region[3]


@pytest.mark.parametrize(
    ("position", "expect_x", "expect_y"),
    [
        ("top-left", "low", "low"),
        ("top-right", "high", "low"),
        ("bottom-left", "low", "high"),
        ("bottom-right", "high", "high"),
        ("center", "mid", "mid"),
    ],
)
async def test_mark_lands_at_its_position(
    make_image: MakeImage,
    context: ProcessingContext,
    position: str,
    expect_x: str,
    expect_y: str,
) -> None:
    source = make_image(400, 400)

    result = await watermark_step(position=position).process(source, context)

    left, top, right, bottom = changed_box(source, result)

    def where(low: int, high: int) -> str:
        centre = (low + high) / 2
        return "low" if centre < 133 else "high" if centre > 267 else "mid"

    assert (where(left, right), where(top, bottom)) == (expect_x, expect_y)


async def test_margin_keeps_the_mark_off_the_edge(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = make_image(400, 400)

    result = await watermark_step(margin=0.1).process(source, context)

    _left, _top, right, bottom = changed_box(source, result)
    assert right <= 360 and bottom <= 360


@pytest.mark.parametrize(
    ("background", "darkest_below", "lightest_above"),
    [
        ((255, 255, 255), 120, None),  # dark text on white
        ((0, 0, 0), None, 135),  # light text on black
        ((128, 128, 128), 80, 175),  # text and outline on mid grey
    ],
)
async def test_mark_is_legible_on_light_and_dark_images(
    context: ProcessingContext,
    background: tuple[int, int, int],
    darkest_below: int | None,
    lightest_above: int | None,
) -> None:
    source = flat(background)

    # At the default opacity (0.6) a full-contrast mark shifts pixels by ~150.
    result = await watermark_step().process(source, context)

    left, top, right, bottom = changed_box(source, result)
    region = np.asarray(reopen(result).convert("L"))[top:bottom, left:right]
    if darkest_below is not None:
        assert region.min() < darkest_below
    if lightest_above is not None:
        assert region.max() > lightest_above


async def test_higher_opacity_changes_pixels_more(context: ProcessingContext) -> None:
    source = flat((90, 120, 200))
    original = np.asarray(reopen(source)).astype(int)

    def strength(result: GeneratedImage) -> float:
        return float(np.abs(np.asarray(reopen(result)).astype(int) - original).sum())

    faint = await watermark_step(opacity=0.2).process(source, context)
    solid = await watermark_step(opacity=1.0).process(source, context)

    assert strength(faint) < strength(solid)


async def test_size_is_relative_to_the_image(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    small, large = make_image(256, 256), make_image(512, 512)

    on_small = changed_box(small, await watermark_step().process(small, context))
    on_large = changed_box(large, await watermark_step().process(large, context))

    ratio = (on_large[2] - on_large[0]) / (on_small[2] - on_small[0])
    assert 1.7 < ratio < 2.3


async def test_keeps_format_mode_and_size(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    rgba = await watermark_step().process(make_image(200, 100, mode="RGBA"), context)
    jpeg = await watermark_step().process(make_image(200, 100, fmt="JPEG"), context)

    assert (reopen(rgba).mode, rgba.mime_type, rgba.width, rgba.height) == (
        "RGBA",
        "image/png",
        200,
        100,
    )
    assert (reopen(jpeg).format, jpeg.width, jpeg.height) == ("JPEG", 200, 100)


async def test_long_text_on_a_tiny_image_still_fits(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = make_image(48, 48)

    result = await watermark_step(
        text="generated by a very long pipeline name"
    ).process(source, context)

    assert reopen(result).size == (48, 48)


async def test_font_file_that_is_not_a_font_fails_at_start(tmp_path: Path) -> None:
    bogus = tmp_path / "font.ttf"
    bogus.write_bytes(b"not a font")
    step = WatermarkStep(WatermarkSettings(font=bogus), instance_name="brand")

    with pytest.raises(ConfigurationError, match=r"postprocess\.brand\.font"):
        await step.start()


@pytest.mark.parametrize(
    "options",
    [
        {"opacity": 0},
        {"opacity": 1.5},
        {"size": 0},
        {"margin": 0.5},
        {"text": ""},
        {"position": "middle"},
        {"color": "bright"},
        {"font": "/nonexistent/font.ttf"},
    ],
)
def test_invalid_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        WatermarkSettings.model_validate(options)
