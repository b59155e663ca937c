"""The resize step, checked on real pixels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pydantic
import pytest
from PIL import Image

from mcp_imagegen import GeneratedImage, ProcessingContext
from mcp_imagegen_imageops.containers import is_lossless_webp
from mcp_imagegen_imageops.resize import ResizeSettings, ResizeStep
from tests.imageops.conftest import encode, photo_pixels, reopen

pytestmark = pytest.mark.anyio

MakeImage = Callable[..., GeneratedImage]


def resize_step(**options: object) -> ResizeStep:
    return ResizeStep(ResizeSettings.model_validate(options))


def three_bands(width: int, height: int) -> GeneratedImage:
    """Red left quarter, green middle half, blue right quarter."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 4] = (255, 0, 0)
    pixels[:, width // 4 : 3 * width // 4] = (0, 255, 0)
    pixels[:, 3 * width // 4 :] = (0, 0, 255)
    return encode(Image.fromarray(pixels, "RGB"))


async def test_max_side_bounds_the_longest_side_keeping_aspect_ratio(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await resize_step(max_side=100).process(make_image(400, 200), context)

    assert reopen(result).size == (100, 50)


async def test_default_bounds_the_longest_side_to_1024(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await ResizeStep(ResizeSettings()).process(make_image(1536, 768), context)

    assert reopen(result).size == (1024, 512)


async def test_smaller_image_is_not_enlarged_and_not_reencoded(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    image = make_image(200, 100)

    result = await resize_step(max_side=400).process(image, context)

    assert result.data == image.data
    assert (result.width, result.height) == (200, 100)


async def test_upscale_enlarges_when_asked(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await resize_step(max_side=400, upscale=True).process(
        make_image(200, 100), context
    )

    assert reopen(result).size == (400, 200)


async def test_contain_fits_inside_the_box(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await resize_step(width=100, height=100).process(
        make_image(400, 200), context
    )

    assert reopen(result).size == (100, 50)


async def test_contain_with_only_a_width_scales_to_that_width(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await resize_step(width=200).process(make_image(400, 300), context)

    assert reopen(result).size == (200, 150)


async def test_cover_fills_the_box_and_crops_the_overflow_centred(
    context: ProcessingContext,
) -> None:
    result = await resize_step(width=100, height=100, fit="cover").process(
        three_bands(400, 200), context
    )

    pixels = np.asarray(reopen(result).convert("RGB")).astype(int)
    assert pixels.shape == (100, 100, 3)
    # The centred 200x200 crop is the green middle band: no red or blue edges.
    assert pixels[:, :, 0].max() < 40
    assert pixels[:, :, 2].max() < 40


async def test_stretch_gives_the_exact_size_and_keeps_all_content(
    context: ProcessingContext,
) -> None:
    result = await resize_step(width=100, height=100, fit="stretch").process(
        three_bands(400, 200), context
    )

    pixels = np.asarray(reopen(result).convert("RGB")).astype(int)
    assert pixels.shape == (100, 100, 3)
    assert pixels[50, 2, 0] > 200  # red band still on the left
    assert pixels[50, 97, 2] > 200  # blue band still on the right


async def test_cover_without_upscale_keeps_the_box_aspect_at_source_scale(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await resize_step(width=200, height=200, fit="cover").process(
        make_image(100, 50), context
    )

    assert reopen(result).size == (50, 50)


async def test_stretch_without_upscale_never_exceeds_the_source(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await resize_step(width=200, height=300, fit="stretch").process(
        make_image(100, 50), context
    )

    width, height = reopen(result).size
    assert width <= 100 and height <= 50
    assert width / height == pytest.approx(200 / 300, rel=0.05)


async def test_lanczos_averages_fine_detail_instead_of_aliasing(
    context: ProcessingContext,
) -> None:
    checkerboard = (np.indices((256, 256)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = encode(Image.fromarray(checkerboard, "L"))

    smooth = await resize_step(max_side=64).process(image, context)
    nearest = await resize_step(max_side=64, resample="nearest").process(image, context)

    smooth_pixels = np.asarray(reopen(smooth)).astype(float)
    assert np.ptp(smooth_pixels) < 20  # an even mid grey, as the eye sees it
    assert abs(smooth_pixels.mean() - 127.5) < 10
    # Point sampling lands on one parity of the pattern: a flat black or white.
    assert abs(np.asarray(reopen(nearest)).astype(float).mean() - 127.5) > 100


async def test_alpha_channel_is_kept(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await resize_step(max_side=64).process(
        make_image(128, 128, mode="RGBA"), context
    )

    decoded = reopen(result)
    assert decoded.mode == "RGBA"
    alpha = np.asarray(decoded.getchannel("A"))
    assert alpha[:, :28].max() == 0  # the transparent left half stays transparent
    assert alpha[:, 36:].min() == 255


@pytest.mark.parametrize(
    ("fmt", "options", "mime"),
    [
        ("JPEG", {"quality": 90}, "image/jpeg"),
        ("WEBP", {"quality": 90}, "image/webp"),
        ("WEBP", {"lossless": True}, "image/webp"),
    ],
)
async def test_output_keeps_the_input_format(
    make_image: MakeImage,
    context: ProcessingContext,
    fmt: str,
    options: dict[str, object],
    mime: str,
) -> None:
    image = make_image(256, 256, fmt=fmt, **options)

    result = await resize_step(max_side=128).process(image, context)

    assert result.mime_type == mime
    assert reopen(result).size == (128, 128)
    assert is_lossless_webp(result.data) == bool(options.get("lossless"))


async def test_declared_size_is_corrected_from_the_bytes(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    image = make_image(300, 200).model_copy(update={"width": 10, "height": 10})

    result = await resize_step(max_side=150).process(image, context)

    assert reopen(result).size == (150, 100)


@pytest.mark.parametrize(
    "options",
    [
        {"max_side": 512, "width": 256},
        {"width": 256, "fit": "cover"},
        {"height": 256, "fit": "stretch"},
        {"max_side": 0},
        {"fit": "fill", "width": 10, "height": 10},
        {"resample": "sinc"},
        {"maxside": 512},
    ],
)
def test_invalid_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        ResizeSettings.model_validate(options)


async def test_gif_input_is_written_as_png(context: ProcessingContext) -> None:
    source = encode(photo_pixels(64, 64).quantize(16), "GIF")

    result = await resize_step(max_side=32).process(source, context)

    decoded = reopen(result)
    assert (decoded.format, decoded.size, decoded.mode) == ("PNG", (32, 32), "RGB")
