"""The ``watermark`` step: a text mark, legible on light and dark images."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from PIL import Image, ImageColor, ImageDraw, ImageFont, ImageStat
from pydantic import Field, FilePath, field_validator

from mcp_imagegen import (
    ComponentSettings,
    ConfigurationError,
    GeneratedImage,
    ProcessingContext,
)
from mcp_imagegen_imageops.encoding import (
    decode,
    encode_with_metadata,
    output_mime_for,
    same_format_options,
)
from mcp_imagegen_imageops.step import ImageOpsStep

Position = Literal["top-left", "top-right", "bottom-left", "bottom-right", "center"]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
#: Smallest text height drawn, in pixels; below it the mark is unreadable.
MIN_FONT_PX = 8
_LIGHT = (255, 255, 255)
_DARK = (0, 0, 0)


class WatermarkSettings(ComponentSettings):
    """``[postprocess.<name>]`` with ``type = "watermark"``."""

    #: The text to draw.
    text: str = Field("AI generated", min_length=1, max_length=200)
    #: Where to draw it.
    position: Position = "bottom-right"
    #: 0 (invisible) to 1 (opaque).
    opacity: float = Field(0.6, gt=0, le=1)
    #: Text height as a fraction of the image's shorter side.
    size: float = Field(0.04, gt=0, le=0.5)
    #: Distance from the edges as a fraction of the image's shorter side.
    margin: float = Field(0.02, ge=0, le=0.25)
    #: Text colour, or "auto": white on dark areas, black on light ones.
    color: str = "auto"
    #: Outline the text in the contrasting colour, so it reads on busy images.
    outline: bool = True
    #: A TrueType/OpenType font file; unset uses Pillow's built-in font.
    font: FilePath | None = None
    #: Quality used when the input is a JPEG or lossy WebP and is written back.
    quality: int = Field(95, ge=1, le=100)

    @field_validator("color")
    @classmethod
    def _check_colour(cls, value: str) -> str:
        if value == "auto":
            return value
        try:
            ImageColor.getrgb(value)
        except ValueError:
            raise ValueError(
                f"not a colour: {value!r} (use 'auto', '#ffffff', 'white', ...)"
            ) from None
        return value


class WatermarkStep(ImageOpsStep):
    """Draw a semi-transparent text mark in a corner or the centre.

    Only the pixels under the mark's bounding box change.
    """

    name: ClassVar[str] = "watermark"
    Settings: ClassVar[type[ComponentSettings]] = WatermarkSettings
    settings: WatermarkSettings

    async def start(self) -> None:
        """Check that the configured font loads (see :meth:`check`)."""
        await self.check()

    async def check(self) -> None:
        """Check that the configured font loads.

        Raises:
            ConfigurationError: if the font file is not a font Pillow can use.
        """
        try:
            _load_font(self.settings.font, 12)
        except OSError as exc:
            raise ConfigurationError(
                f"postprocess.{self.instance_name}.font: cannot load "
                f"{self.settings.font}: {exc}."
            ) from None

    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Draw the mark on ``image`` (see :class:`WatermarkSettings`)."""
        image, pixels, icc = decode(image)
        marked = self.draw(pixels)
        return encode_with_metadata(
            image,
            marked,
            output_mime_for(image),
            same_format_options(image, quality=self.settings.quality),
            icc_profile=icc,
        )

    def draw(self, pixels: Image.Image) -> Image.Image:
        """Return a copy of ``pixels`` with the mark drawn on it."""
        overlay, box = self.render(pixels)
        result = pixels.copy()
        region = pixels.crop(box).convert("RGBA")
        region.alpha_composite(overlay)
        result.paste(region.convert(pixels.mode), box[:2])
        return result

    def render(
        self, pixels: Image.Image
    ) -> tuple[Image.Image, tuple[int, int, int, int]]:
        """Return the mark as an RGBA image and the box it covers in ``pixels``."""
        settings = self.settings
        short_side = min(pixels.size)
        margin = round(settings.margin * short_side)
        room = (max(1, pixels.width - 2 * margin), max(1, pixels.height - 2 * margin))
        font_px = max(MIN_FONT_PX, round(settings.size * short_side))
        font, stroke, bbox = self._fit_text(font_px, room)
        width = min(bbox[2] - bbox[0], pixels.width)
        height = min(bbox[3] - bbox[1], pixels.height)
        left, top = _place(settings.position, pixels.size, (width, height), margin)
        box = (left, top, left + width, top + height)

        fill, outline = self._colours(pixels, box)
        overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        ImageDraw.Draw(overlay).text(
            (-bbox[0], -bbox[1]),
            settings.text,
            font=font,
            fill=(*fill, 255),
            stroke_width=stroke,
            stroke_fill=(*outline, 255),
        )
        if settings.opacity < 1:
            alpha = overlay.getchannel("A").point(
                [round(a * settings.opacity) for a in range(256)]
            )
            overlay.putalpha(alpha)
        return overlay, box

    def _fit_text(
        self, font_px: int, room: tuple[int, int]
    ) -> tuple[Font, int, tuple[int, int, int, int]]:
        # Shrink the text (once, proportionally) when it is wider than the image.
        for _attempt in range(2):
            font = _load_font(self.settings.font, font_px)
            stroke = max(1, round(font_px / 14)) if self.settings.outline else 0
            bbox = _text_bbox(self.settings.text, font, stroke)
            text_w, text_h = bbox[2] - bbox[0], bbox[3] - bbox[1]
            if (text_w <= room[0] and text_h <= room[1]) or font_px <= MIN_FONT_PX:
                break
            shrink = min(room[0] / text_w, room[1] / text_h)
            font_px = max(MIN_FONT_PX, int(font_px * shrink))
        return font, stroke, bbox

    def _colours(
        self, pixels: Image.Image, box: tuple[int, int, int, int]
    ) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        if self.settings.color != "auto":
            rgb = ImageColor.getrgb(self.settings.color)
            fill = (rgb[0], rgb[1], rgb[2])
            luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
            return fill, _DARK if luminance >= 128 else _LIGHT
        # Contrast with what lies under the mark, not with the whole image.
        under = pixels.crop(box).convert("L")
        mean = ImageStat.Stat(under).mean[0]
        return (_DARK, _LIGHT) if mean >= 128 else (_LIGHT, _DARK)


def _load_font(path: Path | None, size: int) -> Font:
    # A fresh font per call: FreeType faces are not safe to share across threads.
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(path), size=size)


def _text_bbox(text: str, font: Font, stroke: int) -> tuple[int, int, int, int]:
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.textbbox(
        (0, 0), text, font=font, stroke_width=stroke
    )
    return int(left), int(top), int(right), int(bottom)


def _place(
    position: Position, size: tuple[int, int], mark: tuple[int, int], margin: int
) -> tuple[int, int]:
    width, height = size
    mark_w, mark_h = mark
    right = max(0, width - margin - mark_w)
    bottom = max(0, height - margin - mark_h)
    left = min(margin, right)
    top = min(margin, bottom)
    if position == "center":
        return max(0, (width - mark_w) // 2), max(0, (height - mark_h) // 2)
    x = left if position.endswith("left") else right
    y = top if position.startswith("top") else bottom
    return x, y
