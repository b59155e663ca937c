"""The ``convert`` step: re-encode as PNG, JPEG or WebP."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from PIL import ImageColor
from pydantic import Field, field_validator, model_validator

from mcp_imagegen import (
    OUTPUT_FORMATS,
    ComponentSettings,
    GeneratedImage,
    ProcessingContext,
)
from mcp_imagegen_imageops.encoding import decode, encode_with_metadata
from mcp_imagegen_imageops.step import ImageOpsStep


class ConvertSettings(ComponentSettings):
    """``[postprocess.<name>]`` with ``type = "convert"``."""

    #: Target format. A request's ``output_format`` takes precedence.
    format: Literal["png", "jpeg", "webp"] = "webp"
    #: Encoder quality for JPEG and lossy WebP (1-100); for lossless WebP, the
    #: compression effort.
    quality: int = Field(85, ge=1, le=100)
    #: WebP only: encode losslessly.
    lossless: bool = False
    #: Spend more CPU for smaller files (PNG: maximum zlib effort, JPEG: optimal
    #: Huffman tables, WebP: slowest encoder method).
    optimize: bool = False
    #: Colour transparent areas become when converting to JPEG (no alpha there).
    background: str = "#ffffff"

    @field_validator("background")
    @classmethod
    def _check_colour(cls, value: str) -> str:
        try:
            ImageColor.getrgb(value)
        except ValueError:
            raise ValueError(
                f"not a colour: {value!r} (use e.g. '#ffffff', 'white' or "
                "'rgb(255,255,255)')"
            ) from None
        return value

    @model_validator(mode="after")
    def _check_lossless(self) -> ConvertSettings:
        if self.lossless and self.format != "webp":
            raise ValueError("lossless applies only to format = 'webp'")
        return self

    @property
    def background_rgb(self) -> tuple[int, int, int]:
        """``background`` as an RGB triple (alpha ignored)."""
        rgb = ImageColor.getrgb(self.background)
        return rgb[0], rgb[1], rgb[2]


class ConvertStep(ImageOpsStep):
    """Encode images as PNG, JPEG or WebP; alpha is flattened for JPEG.

    An image already in the target format passes through unchanged, so a
    request that asked for that format (the core converts to it first) is not
    encoded twice.
    """

    name: ClassVar[str] = "convert"
    Settings: ClassVar[type[ComponentSettings]] = ConvertSettings
    settings: ConvertSettings

    def target_format(self, context: ProcessingContext) -> str:
        """The format to write: the request's ``output_format``, else the setting."""
        return context.output_format or self.settings.format

    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Re-encode ``image`` in the target format (see :class:`ConvertSettings`)."""
        fmt = self.target_format(context)
        mime = OUTPUT_FORMATS[fmt]
        image, pixels, icc = decode(image)
        if image.mime_type == mime:
            return image
        return encode_with_metadata(
            image,
            pixels,
            mime,
            self._options(fmt),
            icc_profile=icc,
            background=self.settings.background_rgb,
        )

    def _options(self, fmt: str) -> dict[str, Any]:
        settings = self.settings
        if fmt == "png":
            return {"optimize": True} if settings.optimize else {}
        if fmt == "jpeg":
            return {"quality": settings.quality, "optimize": settings.optimize}
        lossless = settings.lossless and settings.format == "webp"
        return {
            "quality": settings.quality,
            "lossless": lossless,
            "method": 6 if settings.optimize else 4,
        }
