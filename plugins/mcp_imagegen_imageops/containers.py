"""Read, write and remove metadata blocks in PNG, JPEG and WebP files, byte-exactly.

Adding or removing metadata never needs the pixels: working on the container keeps
every pixel bit-identical (no second lossy encode of a JPEG or WebP) and costs
microseconds instead of a full re-encode. Each format is parsed into its blocks
(PNG chunks, JPEG marker segments before the scan, RIFF chunks), blocks are
dropped or inserted, and the file is reassembled.

Blocks handled:

- EXIF: PNG ``eXIf``, JPEG ``APP1 "Exif\\0\\0"``, WebP ``EXIF``. Held as a bare TIFF
  stream (no ``Exif\\0\\0`` prefix).
- XMP: PNG ``iTXt "XML:com.adobe.xmp"``, JPEG ``APP1 "http://ns.adobe.com/xap/1.0/"``
  (and extended XMP), WebP ``XMP ``.
- PNG text chunks (``tEXt``, ``zTXt``, ``iTXt``), JPEG comments and IPTC (``APP13``).
- ICC profiles are colour data, not content metadata: they are kept unless asked.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_XMP_KEYWORD = b"XML:com.adobe.xmp"
_PNG_XMP_PREFIX = PNG_XMP_KEYWORD + b"\x00"
JPEG_EXIF_HEADER = b"Exif\x00\x00"
JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
JPEG_XMP_EXTENSION_HEADER = b"http://ns.adobe.com/xmp/extension/\x00"
JPEG_ICC_HEADER = b"ICC_PROFILE\x00"
#: Bytes of a PNG copied per slice when reassembling it (see _png_assemble).
_COPY_STEP = 1 << 20
#: Largest payload of one JPEG marker segment (its 16-bit length counts itself).
JPEG_MAX_SEGMENT_PAYLOAD = 65533

_PNG_TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")
# VP8X flag bits (WebP container specification).
_WEBP_FLAG_ICC = 0x20
_WEBP_FLAG_ALPHA = 0x10
_WEBP_FLAG_EXIF = 0x08
_WEBP_FLAG_XMP = 0x04
_WEBP_IMAGE_CHUNKS = (b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF")


class ContainerError(ValueError):
    """The file's block structure is broken, or a block does not fit its format."""


@dataclass(frozen=True)
class TextChunk:
    """One PNG text chunk, kept raw so that compressed chunks round-trip as is."""

    chunk_type: bytes
    payload: bytes

    @property
    def keyword(self) -> bytes:
        """The chunk's keyword (the bytes before the first NUL)."""
        return self.payload.split(b"\x00", 1)[0]

    @classmethod
    def text(cls, keyword: str, value: str) -> TextChunk:
        """Build a ``tEXt`` chunk, or an ``iTXt`` one when ``value`` is not Latin-1.

        Raises:
            ContainerError: if ``keyword`` is not a valid PNG keyword.
        """
        key = _png_keyword(keyword)
        try:
            return cls(b"tEXt", key + b"\x00" + value.encode("latin-1"))
        except UnicodeEncodeError:
            return cls.international(keyword, value)

    @classmethod
    def international(cls, keyword: str, value: str) -> TextChunk:
        """Build an uncompressed UTF-8 ``iTXt`` chunk with no language tag."""
        key = _png_keyword(keyword)
        # keyword NUL, compression flag 0, method 0, language "" NUL, translated "" NUL
        return cls(b"iTXt", key + b"\x00\x00\x00\x00\x00" + value.encode("utf-8"))


@dataclass(frozen=True)
class EmbeddedMetadata:
    """Metadata blocks lifted from one file, ready to be written into another.

    Attributes:
        exif: Bare TIFF stream of the EXIF block, or ``None``.
        xmp: The XMP packet, or ``None``.
        png_text: PNG text chunks (only PNG files carry them).
    """

    exif: bytes | None = None
    xmp: bytes | None = None
    png_text: tuple[TextChunk, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        """True when there is nothing to write."""
        return self.exif is None and self.xmp is None and not self.png_text


def read_metadata(data: bytes, mime_type: str) -> EmbeddedMetadata:
    """Return the EXIF, XMP and PNG text blocks of a PNG, JPEG or WebP file.

    Formats other than those three yield an empty result.

    Raises:
        ContainerError: if the file's structure is broken.
    """
    if mime_type == "image/png":
        return _png_read(data)
    if mime_type == "image/jpeg":
        return _jpeg_read(data)
    if mime_type == "image/webp":
        return _webp_read(data)
    return EmbeddedMetadata()


def write_metadata(
    data: bytes,
    mime_type: str,
    metadata: EmbeddedMetadata,
    *,
    canvas: tuple[int, int],
    has_alpha: bool,
) -> bytes:
    """Return ``data`` with ``metadata``'s blocks written in, pixels untouched.

    A block given in ``metadata`` replaces the file's block of the same kind (EXIF,
    XMP, or a PNG text chunk with the same keyword); the file's other blocks stay.
    PNG text chunks are ignored for JPEG and WebP, which have no place for them.

    Args:
        canvas: Width and height of the image (needed to extend a simple WebP).
        has_alpha: Whether the image has an alpha channel (same reason).

    Raises:
        ContainerError: if the structure is broken or a block is too large for
            the format (a JPEG segment holds at most 65533 bytes).
        ValueError: for a mime type other than PNG, JPEG or WebP.
    """
    if metadata.empty:
        return data
    if mime_type == "image/png":
        return _png_write(data, metadata)
    if mime_type == "image/jpeg":
        return _jpeg_write(data, metadata)
    if mime_type == "image/webp":
        return _webp_write(data, metadata, canvas=canvas, has_alpha=has_alpha)
    raise ValueError(f"Cannot write metadata into {mime_type} files.")


def strip_metadata(data: bytes, mime_type: str, *, keep_icc: bool = True) -> bytes:
    """Return ``data`` without EXIF, XMP, text, comment and IPTC blocks.

    Args:
        keep_icc: Keep the ICC colour profile (removing it can change colours).

    Raises:
        ContainerError: if the file's structure is broken.
        ValueError: for a mime type other than PNG, JPEG or WebP.
    """
    if mime_type == "image/png":
        return _png_strip(data, keep_icc=keep_icc)
    if mime_type == "image/jpeg":
        return _jpeg_strip(data, keep_icc=keep_icc)
    if mime_type == "image/webp":
        return _webp_strip(data, keep_icc=keep_icc)
    raise ValueError(f"Cannot strip metadata from {mime_type} files.")


def is_lossless_webp(data: bytes) -> bool:
    """True when a WebP file's image is VP8L (lossless) coded."""
    try:
        return any(tag == b"VP8L" for tag, _ in _webp_chunks(data))
    except ContainerError:
        return False


# -- PNG -----------------------------------------------------------------------


def _png_keyword(keyword: str) -> bytes:
    try:
        key = keyword.encode("latin-1")
    except UnicodeEncodeError:
        raise ContainerError(f"PNG keyword {keyword!r} is not Latin-1.") from None
    if not 1 <= len(key) <= 79 or b"\x00" in key:
        raise ContainerError(f"PNG keyword {keyword!r} must be 1-79 characters.")
    return key


class _PngChunk(NamedTuple):
    """One chunk of a PNG: its type, its payload (a view, not a copy), its bounds."""

    chunk_type: bytes
    payload: memoryview
    start: int
    end: int


def _png_chunks(data: bytes) -> list[_PngChunk]:
    """Split a PNG into its chunks, ending at IEND, without copying any payload.

    Payloads are memoryviews of ``data``: slicing bytes copies them with the GIL
    held, and a 2048² image is ~10 MB of image data (see :func:`_png_assemble`).
    """
    if not data.startswith(PNG_SIGNATURE):
        raise ContainerError("Not a PNG file (bad signature).")
    view = memoryview(data)
    chunks = []
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise ContainerError("PNG file is truncated (no IEND chunk).")
        (length,) = struct.unpack_from(">I", data, pos)
        chunk_type = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise ContainerError(f"PNG chunk {chunk_type!r} runs past the end of file.")
        chunks.append(_PngChunk(chunk_type, view[pos + 8 : pos + 8 + length], pos, end))
        pos = end
        if chunk_type == b"IEND":
            return chunks


def _png_assemble(data: bytes, pieces: Iterable[bytes | tuple[int, int]]) -> bytes:
    """Join new chunks (bytes) and ranges of ``data`` (``(start, end)``) into a PNG.

    Adjacent ranges are merged, so the image data of a typical file (dozens of
    IDAT chunks in a row) is sliced once, in steps of at most
    :data:`_COPY_STEP` bytes: each slice copies with the GIL held, and short
    steps let the event loop in between. The one ``bytes.join`` then copies
    everything with the GIL released (it does so past 1 MB, for bytes items
    only: memoryview items would keep the GIL, hence slices).
    """
    merged: list[bytes | tuple[int, int]] = []
    for piece in pieces:
        last = merged[-1] if merged else None
        if isinstance(piece, tuple) and isinstance(last, tuple) and last[1] == piece[0]:
            merged[-1] = (last[0], piece[1])
        else:
            merged.append(piece)
    out = [PNG_SIGNATURE]
    for piece in merged:
        if isinstance(piece, tuple):
            start, end = piece
            out.extend(
                data[begin : min(begin + _COPY_STEP, end)]
                for begin in range(start, end, _COPY_STEP)
            )
        else:
            out.append(piece)
    return b"".join(out)


def _png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + payload) & 0xFFFFFFFF
    return (
        struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", crc)
    )


def _is_png_xmp(chunk_type: bytes, payload: memoryview) -> bool:
    return chunk_type == b"iTXt" and payload[: len(_PNG_XMP_PREFIX)] == _PNG_XMP_PREFIX


def _png_read(data: bytes) -> EmbeddedMetadata:
    exif = xmp = None
    texts = []
    for chunk in _png_chunks(data):
        # Metadata chunks are small: copying them out is cheap.
        if chunk.chunk_type == b"eXIf":
            exif = _bare_exif(bytes(chunk.payload))
        elif _is_png_xmp(chunk.chunk_type, chunk.payload):
            xmp = _itxt_value(bytes(chunk.payload))
        elif chunk.chunk_type in _PNG_TEXT_TYPES:
            texts.append(TextChunk(chunk.chunk_type, bytes(chunk.payload)))
    return EmbeddedMetadata(exif=exif, xmp=xmp, png_text=tuple(texts))


def _itxt_value(payload: bytes) -> bytes | None:
    try:
        _key, rest = payload.split(b"\x00", 1)
        compressed, rest = rest[0], rest[2:]
        _lang, _translated, value = rest.split(b"\x00", 2)
        return zlib.decompress(value) if compressed else value
    except (ValueError, IndexError, zlib.error):
        return None


def _png_keyword_of(payload: memoryview) -> bytes:
    # Keywords are at most 79 bytes: look no further (never copy a big payload).
    return bytes(payload[:80]).split(b"\x00", 1)[0]


def _png_write(data: bytes, metadata: EmbeddedMetadata) -> bytes:
    replaced_keywords = {chunk.keyword for chunk in metadata.png_text}
    new_chunks = [_png_chunk(c.chunk_type, c.payload) for c in metadata.png_text]
    if metadata.exif is not None:
        new_chunks.append(_png_chunk(b"eXIf", metadata.exif))
    if metadata.xmp is not None:
        payload = PNG_XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + metadata.xmp
        new_chunks.append(_png_chunk(b"iTXt", payload))

    def replaced(chunk_type: bytes, payload: memoryview) -> bool:
        if chunk_type == b"eXIf":
            return metadata.exif is not None
        if _is_png_xmp(chunk_type, payload):
            return metadata.xmp is not None
        if chunk_type in _PNG_TEXT_TYPES:
            return _png_keyword_of(payload) in replaced_keywords
        return False

    pieces: list[bytes | tuple[int, int]] = []
    inserted = False
    for chunk in _png_chunks(data):
        # eXIf must precede the image data; text is read soonest there too.
        if not inserted and chunk.chunk_type in (b"IDAT", b"IEND"):
            pieces.extend(new_chunks)
            inserted = True
        if not replaced(chunk.chunk_type, chunk.payload):
            pieces.append((chunk.start, chunk.end))
    return _png_assemble(data, pieces)


def _png_strip(data: bytes, *, keep_icc: bool) -> bytes:
    dropped = {*_PNG_TEXT_TYPES, b"eXIf", b"tIME"}
    if not keep_icc:
        dropped.add(b"iCCP")
    return _png_assemble(
        data,
        [
            (chunk.start, chunk.end)
            for chunk in _png_chunks(data)
            if chunk.chunk_type not in dropped
        ],
    )


# -- JPEG ----------------------------------------------------------------------


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes, bytes]], bytes]:
    """Split a JPEG into header segments ``(marker, payload, raw)`` and the rest.

    The rest starts at the first start-of-scan marker and is copied as is.
    """
    if not data.startswith(b"\xff\xd8"):
        raise ContainerError("Not a JPEG file (no start-of-image marker).")
    segments: list[tuple[int, bytes, bytes]] = []
    pos = 2
    while True:
        if pos + 4 > len(data):
            raise ContainerError("JPEG file is truncated (no start of scan).")
        if data[pos] != 0xFF:
            raise ContainerError(f"JPEG marker expected at byte {pos}.")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            return segments, data[pos:]
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            segments.append((marker, b"", data[pos : pos + 2]))
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise ContainerError(f"JPEG segment 0x{marker:02X} runs past the end.")
        segments.append((marker, data[pos + 4 : end], data[pos:end]))
        pos = end


def _jpeg_segment(marker: int, payload: bytes, what: str) -> bytes:
    if len(payload) > JPEG_MAX_SEGMENT_PAYLOAD:
        raise ContainerError(
            f"The {what} block is {len(payload)} bytes; a JPEG segment holds at most "
            f"{JPEG_MAX_SEGMENT_PAYLOAD}."
        )
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _is_jpeg_exif(marker: int, payload: bytes) -> bool:
    return marker == 0xE1 and payload.startswith(JPEG_EXIF_HEADER)


def _is_jpeg_xmp(marker: int, payload: bytes) -> bool:
    return marker == 0xE1 and (
        payload.startswith(JPEG_XMP_HEADER)
        or payload.startswith(JPEG_XMP_EXTENSION_HEADER)
    )


def _jpeg_read(data: bytes) -> EmbeddedMetadata:
    exif = xmp = None
    segments, _scan = _jpeg_segments(data)
    for marker, payload, _raw in segments:
        if _is_jpeg_exif(marker, payload):
            exif = payload[len(JPEG_EXIF_HEADER) :]
        elif marker == 0xE1 and payload.startswith(JPEG_XMP_HEADER):
            xmp = payload[len(JPEG_XMP_HEADER) :]
    return EmbeddedMetadata(exif=exif, xmp=xmp)


def _jpeg_write(data: bytes, metadata: EmbeddedMetadata) -> bytes:
    new_segments = []
    if metadata.exif is not None:
        payload = JPEG_EXIF_HEADER + metadata.exif
        new_segments.append(_jpeg_segment(0xE1, payload, "EXIF"))
    if metadata.xmp is not None:
        payload = JPEG_XMP_HEADER + metadata.xmp
        new_segments.append(_jpeg_segment(0xE1, payload, "XMP"))
    segments, scan = _jpeg_segments(data)
    out = [b"\xff\xd8"]
    inserted = False
    for marker, payload, raw in segments:
        # JFIF wants APP0 first; EXIF/XMP go right after it.
        if not inserted and marker != 0xE0:
            out.extend(new_segments)
            inserted = True
        if _is_jpeg_exif(marker, payload) and metadata.exif is not None:
            continue
        if _is_jpeg_xmp(marker, payload) and metadata.xmp is not None:
            continue
        out.append(raw)
    if not inserted:
        out.extend(new_segments)
    out.append(scan)
    return b"".join(out)


def _jpeg_strip(data: bytes, *, keep_icc: bool) -> bytes:
    segments, scan = _jpeg_segments(data)
    out = [b"\xff\xd8"]
    for marker, payload, raw in segments:
        if marker == 0xFE:  # comment
            continue
        if marker == 0xE2 and keep_icc and payload.startswith(JPEG_ICC_HEADER):
            out.append(raw)
            continue
        # APP0 (JFIF) and APP14 (Adobe) describe how to decode the colours; every
        # other APPn (EXIF, XMP, MPF, IPTC, maker data) is metadata.
        if 0xE1 <= marker <= 0xEF and marker != 0xEE:
            continue
        out.append(raw)
    out.append(scan)
    return b"".join(out)


# -- WebP ----------------------------------------------------------------------


def _webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split a WebP file into ``(fourcc, payload)`` chunks."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ContainerError("Not a WebP file (no RIFF/WEBP header).")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end = min(len(data), 8 + riff_size)
    chunks = []
    pos = 12
    while pos + 8 <= end:
        fourcc = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        if pos + 8 + size > end:
            raise ContainerError(f"WebP chunk {fourcc!r} runs past the end of file.")
        chunks.append((fourcc, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    if not chunks:
        raise ContainerError("WebP file holds no chunks.")
    return chunks


def _webp_assemble(chunks: Iterable[tuple[bytes, bytes]]) -> bytes:
    body = bytearray(b"WEBP")
    for fourcc, payload in chunks:
        body += fourcc + struct.pack("<I", len(payload)) + payload
        if len(payload) & 1:
            body += b"\x00"
    return b"RIFF" + struct.pack("<I", len(body)) + bytes(body)


def _vp8x(flags: int, width: int, height: int) -> bytes:
    return (
        bytes((flags, 0, 0, 0))
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )


def _webp_read(data: bytes) -> EmbeddedMetadata:
    exif = xmp = None
    for fourcc, payload in _webp_chunks(data):
        if fourcc == b"EXIF":
            exif = _bare_exif(payload)
        elif fourcc == b"XMP ":
            xmp = payload
    return EmbeddedMetadata(exif=exif, xmp=xmp)


def _webp_write(
    data: bytes,
    metadata: EmbeddedMetadata,
    *,
    canvas: tuple[int, int],
    has_alpha: bool,
) -> bytes:
    chunks = _webp_chunks(data)
    if chunks[0][0] == b"VP8X":
        header = chunks[0][1]
        flags, rest = header[0], header[1:]
        chunks = chunks[1:]
    else:
        # A simple (VP8/VP8L-only) file has no room for metadata: extend it.
        flags = _WEBP_FLAG_ALPHA if has_alpha else 0
        rest = _vp8x(0, *canvas)[1:]
    kept = [
        (fourcc, payload)
        for fourcc, payload in chunks
        if not (fourcc == b"EXIF" and metadata.exif is not None)
        and not (fourcc == b"XMP " and metadata.xmp is not None)
    ]
    # Order required by the container spec: image chunks, then EXIF, then XMP.
    last_image = max(
        (i for i, (fourcc, _p) in enumerate(kept) if fourcc in _WEBP_IMAGE_CHUNKS),
        default=len(kept) - 1,
    )
    head, tail = kept[: last_image + 1], kept[last_image + 1 :]
    exif_chunks = [c for c in tail if c[0] == b"EXIF"]
    xmp_chunks = [c for c in tail if c[0] == b"XMP "]
    others = [c for c in tail if c[0] not in (b"EXIF", b"XMP ")]
    if metadata.exif is not None:
        exif_chunks = [(b"EXIF", metadata.exif)]
    if metadata.xmp is not None:
        xmp_chunks = [(b"XMP ", metadata.xmp)]
    if exif_chunks:
        flags |= _WEBP_FLAG_EXIF
    if xmp_chunks:
        flags |= _WEBP_FLAG_XMP
    vp8x = (b"VP8X", bytes((flags,)) + rest)
    return _webp_assemble([vp8x, *head, *exif_chunks, *xmp_chunks, *others])


def _webp_strip(data: bytes, *, keep_icc: bool) -> bytes:
    dropped = {b"EXIF", b"XMP "}
    if not keep_icc:
        dropped.add(b"ICCP")
    chunks = _webp_chunks(data)
    if not any(fourcc in dropped for fourcc, _p in chunks):
        return data
    kept = [(fourcc, p) for fourcc, p in chunks if fourcc not in dropped]
    if kept and kept[0][0] == b"VP8X":
        header = kept[0][1]
        flags = header[0] & ~(_WEBP_FLAG_EXIF | _WEBP_FLAG_XMP)
        if not keep_icc:
            flags &= ~_WEBP_FLAG_ICC
        kept[0] = (b"VP8X", bytes((flags,)) + header[1:])
    return _webp_assemble(kept)


def _bare_exif(payload: bytes) -> bytes:
    # Some writers put JPEG's "Exif\0\0" prefix into PNG/WebP EXIF blocks too.
    return payload[6:] if payload.startswith(JPEG_EXIF_HEADER) else payload
