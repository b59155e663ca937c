"""The convert step, checked on real files read back with Pillow."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pydantic
import pytest
from PIL import Image, ImageCms

from mcp_imagegen import GeneratedImage, ProcessingContext
from mcp_imagegen_imageops.convert import ConvertSettings, ConvertStep
from tests.imageops.conftest import encode, make_context, photo_pixels, reopen

pytestmark = pytest.mark.anyio

MakeImage = Callable[..., GeneratedImage]


def convert_step(**options: object) -> ConvertStep:
    return ConvertStep(ConvertSettings.model_validate(options))


@pytest.mark.parametrize(
    ("fmt", "pil_format", "mime"),
    [
        ("jpeg", "JPEG", "image/jpeg"),
        ("webp", "WEBP", "image/webp"),
        ("png", "PNG", "image/png"),
    ],
)
async def test_converts_to_the_configured_format(
    make_image: MakeImage,
    context: ProcessingContext,
    fmt: str,
    pil_format: str,
    mime: str,
) -> None:
    source = make_image(128, 96, fmt="WEBP" if fmt == "png" else "PNG")

    result = await convert_step(format=fmt).process(source, context)

    decoded = reopen(result)
    assert (decoded.format, result.mime_type, decoded.size) == (
        pil_format,
        mime,
        (128, 96),
    )


async def test_default_format_is_webp(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await ConvertStep(ConvertSettings()).process(make_image(), context)

    assert reopen(result).format == "WEBP"


async def test_request_output_format_wins_over_the_configured_format(
    make_image: MakeImage,
) -> None:
    result = await convert_step(format="webp").process(
        make_image(fmt="JPEG"), make_context(output_format="png")
    )

    assert reopen(result).format == "PNG"


async def test_image_already_in_the_target_format_passes_through(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = make_image(fmt="JPEG", quality=95)

    result = await convert_step(format="jpeg", quality=20).process(source, context)

    assert result.data == source.data


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
async def test_lower_quality_gives_smaller_files(
    make_image: MakeImage, context: ProcessingContext, fmt: str
) -> None:
    source = make_image(256, 256)

    sizes = [
        len((await convert_step(format=fmt, quality=q).process(source, context)).data)
        for q in (30, 60, 95)
    ]

    assert sizes[0] < sizes[1] < sizes[2]


async def test_lossless_webp_keeps_every_pixel(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = make_image(128, 128, mode="RGBA")

    result = await convert_step(format="webp", lossless=True).process(source, context)

    original = np.asarray(reopen(source))
    converted = np.asarray(reopen(result))
    visible = original[:, :, 3] > 0  # libwebp may change colour under alpha = 0
    assert np.array_equal(original[visible], converted[visible])


async def test_optimized_jpeg_is_not_larger(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = make_image(256, 256)

    plain = await convert_step(format="jpeg").process(source, context)
    optimized = await convert_step(format="jpeg", optimize=True).process(
        source, context
    )

    assert len(optimized.data) <= len(plain.data)


async def test_alpha_is_flattened_on_the_background_for_jpeg(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = make_image(128, 128, mode="RGBA")  # left half transparent

    result = await convert_step(format="jpeg", background="#ff0000").process(
        source, context
    )

    decoded = reopen(result)
    assert decoded.mode == "RGB"
    pixels = np.asarray(decoded).astype(int)
    left = pixels[:, :56].reshape(-1, 3).mean(axis=0)
    assert left[0] > 240 and left[1] < 15 and left[2] < 15  # red background
    opaque = np.asarray(photo_pixels(128, 128)).astype(int)[:, 72:]
    assert np.abs(pixels[:, 72:] - opaque).mean() < 8  # the picture itself


@pytest.mark.parametrize("fmt", ["webp", "png"])
async def test_alpha_is_kept_where_the_format_has_it(
    make_image: MakeImage, context: ProcessingContext, fmt: str
) -> None:
    source = make_image(128, 128, mode="RGBA", fmt="WEBP" if fmt == "png" else "PNG")

    result = await convert_step(format=fmt).process(source, context)

    alpha = np.asarray(reopen(result).getchannel("A"))
    assert alpha[:, :56].max() == 0 and alpha[:, 72:].min() == 255


async def test_palette_image_converts_to_jpeg(context: ProcessingContext) -> None:
    source = encode(photo_pixels(64, 64).quantize(16))

    result = await convert_step(format="jpeg").process(source, context)

    assert reopen(result).mode == "RGB"


async def test_icc_profile_is_carried_over(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = make_image(64, 64, icc_profile=icc)

    result = await convert_step(format="jpeg").process(source, context)

    assert reopen(result).info.get("icc_profile") == icc


@pytest.mark.parametrize(
    "options",
    [
        {"format": "gif"},
        {"quality": 0},
        {"quality": 101},
        {"format": "jpeg", "lossless": True},
        {"background": "not-a-colour"},
        {"formt": "png"},
    ],
)
def test_invalid_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        ConvertSettings.model_validate(options)


async def test_sixteen_bit_greyscale_is_scaled_not_clipped(
    context: ProcessingContext,
) -> None:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    source = encode(Image.fromarray(ramp))
    assert reopen(source).mode == "I;16"

    result = await convert_step(format="jpeg").process(source, context)

    grey = np.asarray(reopen(result).convert("L")).astype(float)
    assert abs(grey.mean() - 127.5) < 3
    assert grey.min() < 5 and grey.max() > 250
