"""The strip_metadata step: nothing but pixels (and the colour profile) is left."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest
from PIL import ImageCms

from mcp_imagegen import GeneratedImage, PostProcessingError, ProcessingContext
from mcp_imagegen_imageops.containers import read_metadata
from mcp_imagegen_imageops.metadata import (
    MetadataSettings,
    MetadataStep,
    StripMetadataSettings,
    StripMetadataStep,
)
from tests.imageops.conftest import encode, photo_pixels, reopen

pytestmark = pytest.mark.anyio

MakeImage = Callable[..., GeneratedImage]
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
# What Pillow's readers expose for metadata blocks, per format.
METADATA_KEYS = {"exif", "xmp", "XML:com.adobe.xmp", "parameters", "mcp-imagegen"}


def png_chunk_types(data: bytes) -> list[bytes]:
    types, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        types.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return types


def jpeg_markers(data: bytes) -> list[int]:
    markers, pos = [], 2
    while data[pos + 1] != 0xDA:
        markers.append(data[pos + 1])
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return markers


async def with_metadata(
    source: GeneratedImage, context: ProcessingContext
) -> GeneratedImage:
    return await MetadataStep(MetadataSettings()).process(source, context)


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"quality": 80})],
)
async def test_strip_leaves_no_metadata(
    context: ProcessingContext, fmt: str, options: dict[str, object]
) -> None:
    source = await with_metadata(
        encode(photo_pixels(64, 64), fmt, icc_profile=SRGB, **options), context
    )

    result = await StripMetadataStep(StripMetadataSettings()).process(source, context)

    decoded = reopen(result)
    assert not METADATA_KEYS & set(decoded.info)
    assert len(decoded.getexif()) == 0
    assert read_metadata(result.data, result.mime_type).empty
    assert b"lighthouse" not in result.data
    assert decoded.info.get("icc_profile") == SRGB  # colour data is kept


async def test_png_keeps_only_image_chunks(context: ProcessingContext) -> None:
    source = await with_metadata(encode(photo_pixels(32, 32)), context)

    result = await StripMetadataStep(StripMetadataSettings()).process(source, context)

    assert set(png_chunk_types(result.data)) == {b"IHDR", b"IDAT", b"IEND"}


async def test_jpeg_keeps_only_decoding_segments(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = await with_metadata(make_image(fmt="JPEG"), context)

    result = await StripMetadataStep(StripMetadataSettings()).process(source, context)

    markers = jpeg_markers(result.data)
    assert not [m for m in markers if 0xE1 <= m <= 0xEF or m == 0xFE]
    assert 0xC0 in markers or 0xC2 in markers  # the frame header survives


async def test_webp_flags_no_longer_announce_exif_or_xmp(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = await with_metadata(make_image(fmt="WEBP"), context)

    result = await StripMetadataStep(StripMetadataSettings()).process(source, context)

    assert result.data[12:16] == b"VP8X"
    assert result.data[20] & 0x0C == 0
    assert b"EXIF" not in result.data and b"XMP " not in result.data


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
async def test_keep_icc_off_removes_the_colour_profile(
    context: ProcessingContext, fmt: str
) -> None:
    source = encode(photo_pixels(32, 32), fmt, icc_profile=SRGB)

    result = await StripMetadataStep(StripMetadataSettings(keep_icc=False)).process(
        source, context
    )

    assert "icc_profile" not in reopen(result).info


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
async def test_pixels_are_untouched(context: ProcessingContext, fmt: str) -> None:
    source = await with_metadata(encode(photo_pixels(48, 32), fmt), context)

    result = await StripMetadataStep(StripMetadataSettings()).process(source, context)

    assert np.array_equal(np.asarray(reopen(source)), np.asarray(reopen(result)))


async def test_image_without_metadata_is_returned_as_is(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = make_image()

    result = await StripMetadataStep(StripMetadataSettings()).process(source, context)

    assert result.data == source.data


async def test_gif_is_an_error_not_a_silent_no_op(context: ProcessingContext) -> None:
    source = encode(photo_pixels(16, 16).quantize(8), "GIF")

    with pytest.raises(PostProcessingError, match=r"strip_metadata.*image/gif"):
        await StripMetadataStep(StripMetadataSettings()).process(source, context)
