"""The ``resize`` step: bound the longest side, or fit a width x height box."""

from __future__ import annotations

from typing import ClassVar, Literal

from PIL import Image
from pydantic import Field, model_validator

from mcp_imagegen import ComponentSettings, GeneratedImage, ProcessingContext
from mcp_imagegen_imageops.encoding import (
    decode,
    encode_with_metadata,
    output_mime_for,
    same_format_options,
)
from mcp_imagegen_imageops.step import ImageOpsStep

_RESAMPLING = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}
#: Default bound on the longest side when neither max_side nor a box is set.
DEFAULT_MAX_SIDE = 1024


class ResizeSettings(ComponentSettings):
    """``[postprocess.<name>]`` with ``type = "resize"``.

    Give either ``max_side`` or a box (``width`` and/or ``height``); with neither,
    the longest side is bounded by 1024.
    """

    #: Longest side of the result, keeping the aspect ratio.
    max_side: int | None = Field(None, ge=1, le=16384)
    #: Width of the target box, in pixels.
    width: int | None = Field(None, ge=1, le=16384)
    #: Height of the target box, in pixels.
    height: int | None = Field(None, ge=1, le=16384)
    #: How to fit the box: "contain" (fit inside, keep aspect ratio), "cover"
    #: (fill the box, crop the overflow centred) or "stretch" (exact size,
    #: aspect ratio not kept). "cover" and "stretch" need both width and height.
    fit: Literal["contain", "cover", "stretch"] = "contain"
    #: Enlarge images smaller than the target. Off: small images keep their size
    #: (cover/stretch still crop or reshape to the box's aspect ratio).
    upscale: bool = False
    #: Resampling filter; lanczos is the sharpest for downscaling.
    resample: Literal["lanczos", "bicubic", "bilinear", "nearest"] = "lanczos"
    #: Quality used when the input is a JPEG or lossy WebP and is written back.
    quality: int = Field(95, ge=1, le=100)

    @model_validator(mode="after")
    def _check_target(self) -> ResizeSettings:
        box = self.width is not None or self.height is not None
        if self.max_side is not None and box:
            raise ValueError("give either max_side or width/height, not both")
        if self.fit != "contain" and (self.width is None or self.height is None):
            raise ValueError(f"fit = '{self.fit}' needs both width and height")
        if self.max_side is None and not box:
            self.max_side = DEFAULT_MAX_SIDE
        return self


class ResizeStep(ImageOpsStep):
    """Resize images with high-quality resampling; never enlarges unless asked."""

    name: ClassVar[str] = "resize"
    Settings: ClassVar[type[ComponentSettings]] = ResizeSettings
    settings: ResizeSettings

    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Resize ``image`` to the configured target (see :class:`ResizeSettings`)."""
        image, pixels, icc = decode(image)
        target, crop = plan_resize(pixels.width, pixels.height, self.settings)
        if target == pixels.size and crop is None:
            return image  # nothing to do: no re-encode, no quality loss
        resized = pixels.resize(
            target,
            _RESAMPLING[self.settings.resample],
            box=crop,
            # Shrink by whole factors first: much faster on big downscales and,
            # at a gap of 3, indistinguishable from a full Lanczos pass.
            reducing_gap=3.0 if self.settings.resample != "nearest" else None,
        )
        return encode_with_metadata(
            image,
            resized,
            output_mime_for(image),
            same_format_options(image, quality=self.settings.quality),
            icc_profile=icc,
        )


def plan_resize(
    width: int, height: int, settings: ResizeSettings
) -> tuple[tuple[int, int], tuple[float, float, float, float] | None]:
    """Return the output size and the source crop box (``None``: whole image).

    Pure arithmetic, so that the rules are easy to test: no enlargement unless
    ``upscale``; "cover" crops the source centred to the box's aspect ratio.
    """
    if settings.max_side is not None:
        scale = settings.max_side / max(width, height)
        if scale >= 1 and not settings.upscale:
            return (width, height), None
        return _scaled(width, height, scale), None

    box_w, box_h = settings.width, settings.height
    if settings.fit == "contain":
        scales = [s for s in (_ratio(box_w, width), _ratio(box_h, height)) if s]
        scale = min(scales)
        if scale >= 1 and not settings.upscale:
            return (width, height), None
        return _scaled(width, height, scale), None

    assert box_w is not None and box_h is not None  # checked by the settings
    if not settings.upscale:
        # Shrink the box until it fits inside the source: same aspect ratio,
        # no side larger than the source's.
        shrink = min(1.0, width / box_w, height / box_h)
        box_w = max(1, round(box_w * shrink))
        box_h = max(1, round(box_h * shrink))
    if settings.fit == "stretch":
        return (box_w, box_h), None
    # cover: the largest centred crop of the box's aspect ratio, then scale it.
    crop_w = min(float(width), height * box_w / box_h)
    crop_h = min(float(height), width * box_h / box_w)
    left = (width - crop_w) / 2
    top = (height - crop_h) / 2
    crop = (left, top, left + crop_w, top + crop_h)
    if (box_w, box_h) == (width, height):
        return (box_w, box_h), None
    return (box_w, box_h), crop


def _ratio(target: int | None, actual: int) -> float | None:
    return None if target is None else target / actual


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))
