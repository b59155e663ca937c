"""Pillow helpers shared by the core and plugins: safe decoding and encoding.

All functions here are synchronous and CPU-bound; call them from a worker thread
(``anyio.to_thread.run_sync``) when on the event loop.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import Any

from PIL import Image, UnidentifiedImageError

from mcp_imagegen.errors import ValidationError
from mcp_imagegen.models import EXTENSIONS, OUTPUT_FORMATS, GeneratedImage

#: Largest image (in pixels) any helper here will decode: 8192 x 8192.
DEFAULT_MAX_DECODE_PIXELS = 8192 * 8192

_PIL_FORMAT_BY_MIME = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
}
_MIME_BY_PIL_FORMAT = {v: k for k, v in _PIL_FORMAT_BY_MIME.items()}

#: Longest side each format's encoder can write (libwebp: 16383; libjpeg: 65500,
#: its JPEG_MAX_DIMENSION; GIF: a 16-bit field). PNG allows 2**31 - 1.
MAX_SIDE_BY_MIME = {"image/webp": 16383, "image/jpeg": 65500, "image/gif": 65535}
#: Previews are smaller than this (an image this size or larger is shrunk).
PREVIEW_MAX_BYTES = 1_000_000
_FORMAT_NAME_BY_MIME = {"image/webp": "WebP", "image/jpeg": "JPEG", "image/gif": "GIF"}


class FormatSizeError(ValidationError):
    """An image is larger than its target format can hold."""


class ImageDecodeError(ValidationError):
    """Bytes that should hold an image do not hold a decodable, acceptable one."""


class EncodedImage(bytes):
    """Image bytes that an encoder in this process has just written: known whole.

    :func:`verify_image` trusts them without inflating their pixel data (about
    0.6 ms for a 512² PNG), since an encoder that returned cannot have written a
    truncated file. Wrap only bytes straight from an encoder (Pillow's ``save``)
    in the same process, as the placeholder backend does; bytes read from a file,
    a network or another process stay plain ``bytes`` and are checked in full.
    Anything that changes the bytes makes plain ``bytes`` again.

    Building one copies the bytes with the GIL held (about 3 ms for a 2048² PNG,
    during which no other thread or the event loop runs): prefer
    :func:`mark_encoded`, which records the same fact beside the bytes.
    """

    __slots__ = ()


def mark_encoded(image: GeneratedImage) -> GeneratedImage:
    """Record that ``image.data`` was written just now by an encoder in this process.

    The same promise as :class:`EncodedImage`, without copying the bytes: the
    fact is kept beside them, on ``image``, and holds only while ``image.data`` is
    that very object (a ``model_copy`` with other data forgets it). Mark only
    bytes straight from an encoder (Pillow's ``save``); never bytes read from a
    file, a network or another process.

    Returns:
        ``image`` itself, marked.
    """
    image._encoded_data = image.data
    return image


def is_encoded_here(image: GeneratedImage) -> bool:
    """True when ``image.data`` is known whole: marked by :func:`mark_encoded`,
    or an :class:`EncodedImage`."""
    data = image.data
    return image._encoded_data is data or isinstance(data, EncodedImage)


def open_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_DECODE_PIXELS
) -> Image.Image:
    """Decode ``data`` fully and return the image.

    The pixel count is checked from the header before any pixel is decoded, so a
    decompression bomb costs nothing.

    Raises:
        ImageDecodeError: if the bytes are not an image Pillow can read, the image is
            truncated or corrupt, or it has more than ``max_pixels`` pixels.
    """
    if not data:
        raise ImageDecodeError("The image is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"The image is {width}x{height} pixels, more than the limit of "
                    f"{max_pixels} pixels."
                )
            image.load()
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"The data is not a readable image: {exc}") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"The image is truncated or corrupt: {exc}") from None
    return image


def verify_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_DECODE_PIXELS,
    encoded_here: bool = False,
) -> Image.Image:
    """Prove ``data`` is a whole, decodable image; return it opened, not decoded.

    Accepts exactly what :func:`open_image` accepts, but for the common PNG (8 or
    16 bits per sample, grey/RGB with or without alpha, not interlaced, not
    animated) it does so without building pixels: every chunk's CRC is checked
    and the image data is inflated to exactly the size the header announces,
    each row starting with a valid filter type. That is about a quarter of a
    full decode, which the metadata step paid on every generated image. Any
    other image, and any PNG this check has a doubt about, is decoded fully,
    so errors and their messages are :func:`open_image`'s. An
    :class:`EncodedImage` (written by an encoder in this process) is whole by
    construction: only its header is read.

    The returned image's pixels are decoded on first access.

    Args:
        data: The bytes to check.
        max_pixels: Largest image accepted.
        encoded_here: ``data`` was written by an encoder in this process
            (``is_encoded_here(image)`` of the image holding it): as for an
            :class:`EncodedImage`, only the header is read.

    Raises:
        ImageDecodeError: as for :func:`open_image`.
    """
    if (
        encoded_here
        or isinstance(data, EncodedImage)
        or _png_is_whole(data, max_pixels)
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                opened = Image.open(io.BytesIO(data))
            width, height = opened.size
            if width * height <= max_pixels:
                return opened
        except Exception:
            pass  # not sure after all: open_image below names the problem
    return open_image(data, max_pixels=max_pixels)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Samples per pixel of the PNG colour types the fast check handles: grey, RGB,
#: grey + alpha, RGBA (palette images need PLTE checks: they are decoded).
_PNG_SAMPLES = {0: 1, 2: 3, 4: 2, 6: 4}


def _png_is_whole(data: bytes, max_pixels: int) -> bool:
    """True when ``data`` is a PNG of a kind Pillow would decode without error.

    False means "not sure", never "corrupt": the caller then decodes fully.
    """
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return False
    try:
        width, height, depth, colour, _, _, interlace = struct.unpack_from(
            ">IIBBBBB", data, 16
        )
    except struct.error:
        return False
    samples = _PNG_SAMPLES.get(colour)
    if (
        samples is None
        or depth not in (8, 16)
        or interlace
        or not 0 < width * height <= max_pixels
    ):
        return False
    stride = 1 + width * samples * depth // 8  # a filter-type byte, then the row
    expected = stride * height
    inflater = zlib.decompressobj()
    produced = 0  # bytes inflated so far; only counted, never kept
    seen_idat = False
    # Chunks are read through a view: a bytes slice would copy the whole image
    # data once more with the GIL held; crc32 and inflate release it.
    view = memoryview(data)
    pos = 8
    try:
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from(">I", data, pos)
            kind = data[pos + 4 : pos + 8]
            body_end = pos + 8 + length
            if body_end + 4 > len(data):
                return False
            (crc,) = struct.unpack_from(">I", data, body_end)
            if zlib.crc32(view[pos + 4 : body_end]) != crc:
                return False
            if kind == b"IEND":
                return inflater.eof and produced == expected
            if kind in (b"acTL", b"fcTL", b"fdAT") or (seen_idat and kind != b"IDAT"):
                # Animated (every frame would need checking), or chunks after the
                # image data, which Pillow parses only when it decodes.
                return False
            if kind == b"IDAT":
                seen_idat = True
                # Never inflate past the announced size: a zlib bomb stops here.
                piece = inflater.decompress(
                    view[pos + 8 : body_end], expected + 1 - produced
                )
                # Each row starts with its filter type, 0 to 4.
                first_row = -produced % stride
                if max(piece[first_row::stride], default=0) > 4:
                    return False
                produced += len(piece)
                if produced > expected:
                    return False
            pos = body_end + 4
    except zlib.error:
        return False
    return False


def mime_type_of(image: Image.Image) -> str:
    """Return the mime type of a decoded image's source format (PNG if unknown)."""
    return _MIME_BY_PIL_FORMAT.get(image.format or "", "image/png")


def describe_image(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_DECODE_PIXELS
) -> tuple[str, int, int]:
    """Verify ``data`` is a complete image and return ``(mime_type, width, height)``.

    Images in formats the server does not store (anything but PNG, JPEG, WebP, GIF)
    are rejected too.

    Raises:
        ImageDecodeError: as for :func:`open_image`, or for an unsupported format.
    """
    image = verify_image(data, max_pixels=max_pixels)
    mime = _MIME_BY_PIL_FORMAT.get(image.format or "")
    if mime is None:
        raise ImageDecodeError(
            f"Images in {image.format} format are not supported; "
            f"use one of {', '.join(sorted(EXTENSIONS))}."
        )
    return mime, image.width, image.height


def encode_image(image: Image.Image, mime_type: str, **options: Any) -> bytes:
    """Encode ``image`` as ``mime_type``, flattening alpha for JPEG onto white.

    Extra ``options`` go to ``Image.save`` (``quality``, ``optimize``, ...).
    """
    check_encodable(image.width, image.height, mime_type)
    pil_format = _PIL_FORMAT_BY_MIME[mime_type]
    if pil_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = flatten_alpha(image, (255, 255, 255))
    elif image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def check_encodable(width: int, height: int, mime_type: str) -> None:
    """Refuse a size the format's encoder cannot write, before any encoding.

    Raises:
        FormatSizeError: naming the format, its limit, the size and what to do.
    """
    limit = MAX_SIDE_BY_MIME.get(mime_type)
    if limit is None or max(width, height) <= limit:
        return
    raise FormatSizeError(
        f"{_FORMAT_NAME_BY_MIME[mime_type]} allows at most {limit} pixels per side; "
        f"the image is {width}x{height}. Use output_format 'png' (no such limit) "
        "or a smaller size."
    )


def flatten_alpha(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Return an RGB copy of ``image`` composited over ``background``."""
    if image.mode in ("RGBA", "LA") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        base = Image.new("RGB", rgba.size, background)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return image.convert("RGB")


def convert_format(
    image: GeneratedImage, output_format: str, *, quality: int = 90
) -> GeneratedImage:
    """Return ``image`` re-encoded as ``output_format`` ("png", "jpeg", "webp").

    Returns the input unchanged when it already has that format. EXIF, XMP and the
    ICC profile are carried over; PNG text chunks are not (other formats have none).
    """
    mime = OUTPUT_FORMATS[output_format]
    if image.mime_type == mime:
        return image
    decoded = open_image(image.data)
    options: dict[str, Any] = {} if mime == "image/png" else {"quality": quality}
    # Keep embedded metadata (e.g. a generation recipe) and the colour profile.
    for key in ("exif", "xmp", "icc_profile"):
        if decoded.info.get(key):
            options[key] = decoded.info[key]
    data = encode_image(decoded, mime, **options)
    return image.model_copy(update={"data": data, "mime_type": mime})


def preview_fits(
    data: bytes, max_side: int, max_bytes: int = PREVIEW_MAX_BYTES
) -> str | None:
    """The mime type of ``data`` when it can be its own preview, else None.

    Reads only the header (microseconds, cheap enough for the event loop): an
    image fits when no side exceeds ``max_side`` and it is under ``max_bytes``.

    Raises:
        ImageDecodeError: when ``data`` has no readable image header.
    """
    try:
        header = Image.open(io.BytesIO(data))  # reads the header only
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageDecodeError(f"The data is not a readable image: {exc}") from None
    mime = _MIME_BY_PIL_FORMAT.get(header.format or "")
    if mime is not None and max(header.size) <= max_side and len(data) < max_bytes:
        return mime
    return None


def make_preview(
    data: bytes, max_side: int, max_bytes: int = PREVIEW_MAX_BYTES
) -> tuple[bytes, str]:
    """Return ``(bytes, mime_type)`` of a preview no larger than ``max_side``.

    An image that already fits (sides and ``max_bytes``) is returned as is;
    otherwise it is shrunk and encoded as JPEG, lowering quality and then size
    until it is smaller than ``max_bytes``.
    """
    mime = preview_fits(data, max_side, max_bytes)
    if mime is not None:
        return data, mime  # already small enough: no need to decode at all
    image = open_image(data)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    quality = 85
    while True:
        encoded = encode_image(image, "image/jpeg", quality=quality)
        if len(encoded) < max_bytes:
            return encoded, "image/jpeg"
        if quality > 40:
            quality -= 15
        else:
            image = image.resize(
                (max(1, image.width // 2), max(1, image.height // 2)),
                Image.Resampling.LANCZOS,
            )
