"""Every step fails clearly on input that is not a whole, acceptable image."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import pytest

from mcp_imagegen import (
    GeneratedImage,
    PostProcessingError,
    PostProcessor,
    ProcessingContext,
)
from mcp_imagegen_imageops.convert import ConvertSettings, ConvertStep
from mcp_imagegen_imageops.metadata import (
    MetadataSettings,
    MetadataStep,
    StripMetadataSettings,
    StripMetadataStep,
)
from mcp_imagegen_imageops.resize import ResizeSettings, ResizeStep
from mcp_imagegen_imageops.watermark import WatermarkSettings, WatermarkStep
from tests.imageops.conftest import reopen

pytestmark = pytest.mark.anyio

MakeImage = Callable[..., GeneratedImage]
STEPS: list[Callable[[], PostProcessor]] = [
    lambda: ResizeStep(ResizeSettings(max_side=64), instance_name="thumb"),
    lambda: ConvertStep(ConvertSettings(format="png"), instance_name="thumb"),
    lambda: WatermarkStep(WatermarkSettings(), instance_name="thumb"),
    lambda: MetadataStep(MetadataSettings(), instance_name="thumb"),
    lambda: StripMetadataStep(StripMetadataSettings(), instance_name="thumb"),
]
STEP_IDS = ["resize", "convert", "watermark", "metadata", "strip_metadata"]


def png_claiming_size(width: int, height: int) -> bytes:
    """A PNG header announcing a huge image, with a tiny body."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    crc = struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    idat = zlib.compress(b"\x00" * 64)
    idat_chunk = b"IDAT" + idat
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + crc
        + struct.pack(">I", len(idat))
        + idat_chunk
        + struct.pack(">I", zlib.crc32(idat_chunk) & 0xFFFFFFFF)
        + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )


@pytest.mark.parametrize("make_step", STEPS, ids=STEP_IDS)
async def test_truncated_image_is_a_clear_error_naming_the_step(
    make_image: MakeImage,
    context: ProcessingContext,
    make_step: Callable[[], PostProcessor],
) -> None:
    whole = make_image(128, 128)
    truncated = whole.model_copy(update={"data": whole.data[: len(whole.data) // 2]})

    with pytest.raises(PostProcessingError) as caught:
        await make_step().process(truncated, context)

    message = str(caught.value)
    assert "'thumb'" in message and "truncated or corrupt" in message


@pytest.mark.parametrize("make_step", STEPS, ids=STEP_IDS)
async def test_bytes_that_are_not_an_image_are_a_clear_error(
    context: ProcessingContext, make_step: Callable[[], PostProcessor]
) -> None:
    garbage = GeneratedImage(
        data=b"<html>502 Bad Gateway</html>", mime_type="image/png", width=8, height=8
    )

    with pytest.raises(PostProcessingError, match=r"'thumb'.*not a readable image"):
        await make_step().process(garbage, context)


@pytest.mark.parametrize("make_step", STEPS, ids=STEP_IDS)
async def test_decompression_bomb_is_refused_before_decoding(
    context: ProcessingContext, make_step: Callable[[], PostProcessor]
) -> None:
    bomb = GeneratedImage(
        data=png_claiming_size(9000, 8000),
        mime_type="image/png",
        width=9000,
        height=8000,
    )

    with pytest.raises(PostProcessingError, match=r"'thumb'.*more than the limit"):
        await make_step().process(bomb, context)


@pytest.mark.parametrize("make_step", STEPS, ids=STEP_IDS)
async def test_mislabelled_image_is_handled_as_what_it_really_is(
    make_image: MakeImage,
    context: ProcessingContext,
    make_step: Callable[[], PostProcessor],
) -> None:
    jpeg = make_image(96, 96, fmt="JPEG")
    mislabelled = jpeg.model_copy(update={"mime_type": "image/png"})

    result = await make_step().process(mislabelled, context)

    reopen(result)  # declared mime type and size match the bytes
