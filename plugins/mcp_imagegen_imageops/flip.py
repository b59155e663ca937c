"""The ``flip`` step: mirror images horizontally, vertically or both."""

from __future__ import annotations

from typing import ClassVar, Literal

from PIL import Image
from pydantic import Field

from mcp_imagegen import ComponentSettings, GeneratedImage, ProcessingContext
from mcp_imagegen_imageops.encoding import (
    decode,
    encode_with_metadata,
    output_mime_for,
    same_format_options,
)
from mcp_imagegen_imageops.step import ImageOpsStep

_TRANSPOSE = {
    "horizontal": (Image.Transpose.FLIP_LEFT_RIGHT,),
    "vertical": (Image.Transpose.FLIP_TOP_BOTTOM,),
    "both": (Image.Transpose.ROTATE_180,),
}


class FlipSettings(ComponentSettings):
    """``[postprocess.<name>]`` with ``type = "flip"``."""

    #: ``horizontal`` (left and right swap, a mirror), ``vertical`` (top and
    #: bottom swap) or ``both`` (the same as rotating by 180 degrees).
    direction: Literal["horizontal", "vertical", "both"] = "horizontal"
    #: Quality used when the input is a JPEG or lossy WebP and is written back.
    quality: int = Field(95, ge=1, le=100)


class FlipStep(ImageOpsStep):
    """Mirror images; exact pixel moves, no resampling."""

    name: ClassVar[str] = "flip"
    Settings: ClassVar[type[ComponentSettings]] = FlipSettings
    settings: FlipSettings

    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Flip ``image`` in the configured direction."""
        image, pixels, icc = decode(image)
        for method in _TRANSPOSE[self.settings.direction]:
            pixels = pixels.transpose(method)
        return encode_with_metadata(
            image,
            pixels,
            output_mime_for(image),
            same_format_options(image, quality=self.settings.quality),
            icc_profile=icc,
        )
