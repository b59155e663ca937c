"""Decoding to a workable mode and re-encoding with the source's metadata kept.

Pixel steps (resize, convert, watermark) decode, change pixels, and encode again.
Encoding with Pillow drops everything but the pixels, so the EXIF, XMP and ICC
profile of the input are carried over to the output (PNG text chunks too, when
the output is still PNG); that way a ``metadata`` step placed early in a chain
still describes the final file. Everything here is synchronous: call it from
a worker thread.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from PIL import Image

from mcp_imagegen import GeneratedImage
from mcp_imagegen.imaging import encode_image, flatten_alpha, mime_type_of, open_image
from mcp_imagegen_imageops.containers import (
    is_lossless_webp,
    read_metadata,
    write_metadata,
)

#: Formats the pixel steps write; other inputs (GIF) are re-encoded as PNG.
WRITABLE_MIME_TYPES = ("image/png", "image/jpeg", "image/webp")
_DIRECT_MODES = ("RGB", "RGBA", "L", "LA")


def decode(image: GeneratedImage) -> tuple[GeneratedImage, Image.Image, bytes | None]:
    """Decode ``image`` (bomb-guarded) for a pixel step.

    Returns:
        ``image`` with ``mime_type``, ``width`` and ``height`` corrected to what the
        bytes really hold; its pixels in RGB, RGBA, L or LA mode; its ICC profile.

    Raises:
        ImageDecodeError: if the bytes are not a complete, acceptable image.
    """
    decoded = open_image(image.data)
    icc = decoded.info.get("icc_profile") or None
    actual = verified(image, decoded)
    if decoded.mode.startswith("I"):
        # 16-bit greyscale: a plain convert would clip everything above 255 to
        # white; scale the range down instead.
        decoded = decoded.convert("I").point(lambda value: value * (1 / 256))
        decoded = decoded.convert("L")
    elif decoded.mode not in _DIRECT_MODES:
        decoded = decoded.convert("RGBA" if decoded.has_transparency_data else "RGB")
    return actual, decoded, icc


def verified(image: GeneratedImage, decoded: Image.Image) -> GeneratedImage:
    """Return ``image`` described by what ``decoded`` (its decoded bytes) holds.

    A backend that mislabels its output must not make a step parse the file as
    the wrong format, or report the wrong size.
    """
    facts = {
        "mime_type": mime_type_of(decoded),
        "width": decoded.width,
        "height": decoded.height,
    }
    if all(getattr(image, key) == value for key, value in facts.items()):
        return image
    return image.model_copy(update=facts)


def has_alpha(image: Image.Image) -> bool:
    """True when ``image``'s mode has an alpha band."""
    return "A" in image.getbands()


def same_format_options(source: GeneratedImage, *, quality: int) -> dict[str, Any]:
    """Encoder options to write pixels back in ``source``'s own format.

    Lossy formats use ``quality``; a lossless WebP stays lossless.
    """
    if source.mime_type == "image/jpeg":
        return {"quality": quality}
    if source.mime_type == "image/webp":
        if is_lossless_webp(source.data):
            return {"lossless": True}
        return {"quality": quality}
    return {}


def output_mime_for(source: GeneratedImage) -> str:
    """The format a pixel step writes for ``source``: its own, or PNG for GIF."""
    return source.mime_type if source.mime_type in WRITABLE_MIME_TYPES else "image/png"


def encode_with_metadata(
    source: GeneratedImage,
    pixels: Image.Image,
    mime_type: str,
    options: dict[str, Any],
    *,
    icc_profile: bytes | None,
    background: tuple[int, int, int] = (255, 255, 255),
) -> GeneratedImage:
    """Encode ``pixels`` as ``mime_type`` and carry ``source``'s metadata over.

    Alpha is flattened onto ``background`` for JPEG. EXIF, XMP and the ICC profile
    of ``source`` are written into the result; PNG text chunks only when both are
    PNG (other formats have no place for them).

    Returns:
        A copy of ``source`` with the new bytes, mime type and size.
    """
    prepared = _prepare_mode(pixels, mime_type, background)
    if icc_profile is not None:
        options = {**options, "icc_profile": icc_profile}
    data = encode_image(prepared, mime_type, **options)
    metadata = read_metadata(source.data, source.mime_type)
    if mime_type != "image/png" and metadata.png_text:
        metadata = replace(metadata, png_text=())
    data = write_metadata(
        data,
        mime_type,
        metadata,
        canvas=prepared.size,
        has_alpha=has_alpha(prepared),
    )
    return source.model_copy(
        update={
            "data": data,
            "mime_type": mime_type,
            "width": prepared.width,
            "height": prepared.height,
        }
    )


def _prepare_mode(
    image: Image.Image, mime_type: str, background: tuple[int, int, int]
) -> Image.Image:
    if mime_type == "image/jpeg":
        if image.mode in ("RGB", "L"):
            return image
        return flatten_alpha(image, background)
    if mime_type == "image/webp" and image.mode in ("L", "LA"):
        return image.convert("RGBA" if image.mode == "LA" else "RGB")
    return image
