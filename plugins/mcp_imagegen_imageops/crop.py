"""The ``crop`` step: cut a fixed pixel box, or the largest area of an aspect ratio."""

from __future__ import annotations

import math
import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from mcp_imagegen import (
    ComponentSettings,
    GeneratedImage,
    PostProcessingError,
    ProcessingContext,
)
from mcp_imagegen_imageops.encoding import (
    decode,
    encode_with_metadata,
    output_mime_for,
    same_format_options,
)
from mcp_imagegen_imageops.step import ImageOpsStep

Gravity = Literal[
    "center",
    "top",
    "bottom",
    "left",
    "right",
    "top-left",
    "top-right",
    "bottom-left",
    "bottom-right",
]
#: Aspect used when neither a box nor an aspect is configured.
DEFAULT_ASPECT = "1:1"
_ASPECT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*$")


class CropSettings(ComponentSettings):
    """``[postprocess.<name>]`` with ``type = "crop"``.

    Two modes, one at a time: a **box** (``width`` and ``height``, placed at
    ``left``/``top``), or an **aspect** ratio (``"16:9"``): the largest area of
    that ratio, placed by ``gravity``. With neither, a centred ``"1:1"`` square.
    """

    #: Box mode: distance of the box from the left edge, in pixels.
    left: int | None = Field(None, ge=0, le=65535)
    #: Box mode: distance of the box from the top edge, in pixels.
    top: int | None = Field(None, ge=0, le=65535)
    #: Box mode: width of the box, in pixels.
    width: int | None = Field(None, ge=1, le=65535)
    #: Box mode: height of the box, in pixels.
    height: int | None = Field(None, ge=1, le=65535)
    #: Aspect mode: ratio ``"W:H"`` of the area kept (``"16:9"``, ``"1:1"``).
    aspect: str | None = None
    #: Aspect mode: which part is kept: ``center``, an edge or a corner.
    gravity: Gravity = "center"
    #: Quality used when the input is a JPEG or lossy WebP and is written back.
    quality: int = Field(95, ge=1, le=100)

    @field_validator("aspect")
    @classmethod
    def _check_aspect(cls, value: str | None) -> str | None:
        if value is not None:
            match = _ASPECT.match(value)
            if not match or not all(float(part) > 0 for part in match.groups()):
                raise ValueError(
                    f"not an aspect ratio: {value!r} (use 'W:H' with positive "
                    "numbers, e.g. '16:9' or '1:1')"
                )
        return value

    @model_validator(mode="after")
    def _check_mode(self) -> CropSettings:
        box_keys = [
            key
            for key in ("left", "top", "width", "height")
            if getattr(self, key) is not None
        ]
        if box_keys and self.aspect is not None:
            raise ValueError(
                "give either a box (left, top, width, height) or aspect, not both"
            )
        if box_keys and (self.width is None or self.height is None):
            raise ValueError(
                "a box needs both width and height (left and top default to 0)"
            )
        if box_keys and "gravity" in self.model_fields_set:
            raise ValueError("gravity places an aspect crop; a box has left and top")
        if not box_keys and self.aspect is None:
            self.aspect = DEFAULT_ASPECT
        return self

    def ratio(self) -> float | None:
        """Return the aspect as width / height, or ``None`` in box mode."""
        if self.aspect is None:
            return None
        match = _ASPECT.match(self.aspect)
        assert match is not None  # checked by the validator
        return float(match.group(1)) / float(match.group(2))


class CropStep(ImageOpsStep):
    """Crop images exactly (no resampling); an unchanged image passes through."""

    name: ClassVar[str] = "crop"
    Settings: ClassVar[type[ComponentSettings]] = CropSettings
    settings: CropSettings

    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Crop ``image`` as configured (see :class:`CropSettings`).

        Raises:
            PostProcessingError: a box that lies wholly outside the image.
        """
        image, pixels, icc = decode(image)
        box = self.plan(pixels.width, pixels.height)
        if box == (0, 0, pixels.width, pixels.height):
            return image  # nothing to cut: no re-encode, no quality loss
        return encode_with_metadata(
            image,
            pixels.crop(box),
            output_mime_for(image),
            same_format_options(image, quality=self.settings.quality),
            icc_profile=icc,
        )

    def plan(self, width: int, height: int) -> tuple[int, int, int, int]:
        """Return the ``(left, top, right, bottom)`` box kept of a width x height image.

        Raises:
            PostProcessingError: a box that lies wholly outside the image.
        """
        s = self.settings
        ratio = s.ratio()
        if ratio is None:
            assert s.width is not None and s.height is not None
            left, top = s.left or 0, s.top or 0
            if left >= width or top >= height:
                raise PostProcessingError(
                    f"{self.describe()}: the box at left={left}, top={top} lies "
                    f"outside the {width}x{height} image; lower left/top."
                )
            # Clipped to the image, so one step serves images of any size.
            return left, top, min(width, left + s.width), min(height, top + s.height)
        if width / height > ratio:
            crop_w, crop_h = _clamp(round(height * ratio), width), height
        else:
            crop_w, crop_h = width, _clamp(round(width / ratio), height)
        gravity = s.gravity
        left = _offset(width - crop_w, "left" in gravity, "right" in gravity)
        top = _offset(height - crop_h, "top" in gravity, "bottom" in gravity)
        return left, top, left + crop_w, top + crop_h


def _clamp(value: int, limit: int) -> int:
    return max(1, min(limit, value))


def _offset(spare: int, start: bool, end: bool) -> int:
    if start:
        return 0
    if end:
        return spare
    return math.floor(spare / 2)
