"""The ``rotate`` step: quarter turns exactly, any other angle resampled."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from PIL import Image, ImageColor
from pydantic import Field, field_validator

from mcp_imagegen import ComponentSettings, GeneratedImage, ProcessingContext
from mcp_imagegen_imageops.encoding import (
    decode,
    encode_with_metadata,
    output_mime_for,
    same_format_options,
)
from mcp_imagegen_imageops.step import ImageOpsStep

# Clockwise quarter turns; Pillow's ROTATE_* constants turn counter-clockwise.
_QUARTER_TURNS = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}
_RESAMPLING = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


class RotateSettings(ComponentSettings):
    """``[postprocess.<name>]`` with ``type = "rotate"``."""

    #: Degrees, **clockwise** (-360 to 360). 90, 180 and 270 move pixels exactly;
    #: other angles resample and uncover corners painted with ``fill``.
    angle: float = Field(90.0, ge=-360, le=360)
    #: Other angles: grow the canvas to hold the whole rotated image (true), or
    #: keep the size and cut the corners off (false).
    expand: bool = True
    #: Other angles: colour of the uncovered corners: "transparent" or a colour
    #: ("#000000", "white", "rgb(0,0,0)"). A JPEG has no alpha: transparent
    #: corners come out white there.
    fill: str = "transparent"
    #: Other angles: resampling filter.
    resample: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    #: Quality used when the input is a JPEG or lossy WebP and is written back.
    quality: int = Field(95, ge=1, le=100)

    @field_validator("angle")
    @classmethod
    def _check_angle(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number of degrees")
        return value

    @field_validator("fill")
    @classmethod
    def _check_fill(cls, value: str) -> str:
        try:
            fill_rgba(value)
        except ValueError:
            raise ValueError(
                f"not a colour: {value!r} (use 'transparent', '#000000', "
                "'white', 'rgb(0,0,0)', ...)"
            ) from None
        return value


def fill_rgba(value: str) -> tuple[int, int, int, int]:
    """Return ``value`` ("transparent" or a CSS-style colour) as RGBA.

    Raises:
        ValueError: if ``value`` is not a colour.
    """
    if value.strip().lower() == "transparent":
        return 0, 0, 0, 0
    rgba = ImageColor.getcolor(value, "RGBA")
    assert isinstance(rgba, tuple)
    red, green, blue, alpha = rgba
    return red, green, blue, alpha


class RotateStep(ImageOpsStep):
    """Rotate images clockwise; a full turn passes the image through unchanged."""

    name: ClassVar[str] = "rotate"
    Settings: ClassVar[type[ComponentSettings]] = RotateSettings
    settings: RotateSettings

    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Rotate ``image`` by the configured angle (see :class:`RotateSettings`)."""
        s = self.settings
        angle = s.angle % 360
        image, pixels, icc = decode(image)
        if angle == 0:
            return image  # a whole turn: no re-encode, no quality loss
        quarter = _QUARTER_TURNS.get(int(angle)) if angle.is_integer() else None
        if quarter is not None:
            rotated = pixels.transpose(quarter)
        else:
            fill = fill_rgba(s.fill)
            if fill[3] < 255 and "A" not in pixels.getbands():
                # The uncovered corners need an alpha band to be transparent.
                pixels = pixels.convert("LA" if pixels.mode == "L" else "RGBA")
            if pixels.mode in ("L", "LA"):
                # A colour fill on greyscale: work in colour, not a grey guess.
                pixels = pixels.convert("RGBA" if pixels.mode == "LA" else "RGB")
            rotated = pixels.rotate(
                -angle,  # Pillow turns counter-clockwise
                _RESAMPLING[s.resample],
                expand=s.expand,
                fillcolor=fill if "A" in pixels.getbands() else fill[:3],
            )
        return encode_with_metadata(
            image,
            rotated,
            output_mime_for(image),
            same_format_options(image, quality=s.quality),
            icc_profile=icc,
        )
