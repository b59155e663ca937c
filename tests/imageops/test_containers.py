"""Byte-level metadata editing in PNG, JPEG and WebP containers."""

from __future__ import annotations

import io
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mcp_imagegen_imageops.containers import (
    ContainerError,
    EmbeddedMetadata,
    TextChunk,
    read_metadata,
    strip_metadata,
    write_metadata,
)
from tests.imageops.conftest import encode, photo_pixels

TIFF = b"MM\x00*\x00\x00\x00\x08\x00\x00"  # an empty big-endian IFD0
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
PNG = encode(photo_pixels(16, 16)).data
JPEG = encode(photo_pixels(16, 16), "JPEG").data
WEBP = encode(photo_pixels(16, 16), "WEBP").data


def write(data: bytes, mime: str, metadata: EmbeddedMetadata) -> bytes:
    return write_metadata(data, mime, metadata, canvas=(16, 16), has_alpha=False)


@pytest.mark.parametrize(
    ("data", "mime"), [(PNG, "image/png"), (JPEG, "image/jpeg"), (WEBP, "image/webp")]
)
def test_written_exif_and_xmp_read_back_identically(data: bytes, mime: str) -> None:
    written = write(data, mime, EmbeddedMetadata(exif=TIFF, xmp=XMP))

    assert read_metadata(written, mime) == EmbeddedMetadata(exif=TIFF, xmp=XMP)


def test_png_text_chunk_replaces_only_the_same_keyword() -> None:
    first = write(
        PNG,
        "image/png",
        EmbeddedMetadata(
            png_text=(
                TextChunk.text("parameters", "old"),
                TextChunk.text("Author", "me"),
            )
        ),
    )

    second = write(
        first,
        "image/png",
        EmbeddedMetadata(png_text=(TextChunk.text("parameters", "new"),)),
    )

    info = Image.open(io.BytesIO(second)).info
    assert (info["parameters"], info["Author"]) == ("new", "me")


def test_jpeg_metadata_goes_after_the_jfif_header() -> None:
    written = write(JPEG, "image/jpeg", EmbeddedMetadata(exif=TIFF, xmp=XMP))

    assert written[2:4] == b"\xff\xe0"  # APP0 (JFIF) stays first
    app0_end = 4 + int.from_bytes(written[4:6], "big")
    assert written[app0_end : app0_end + 2] == b"\xff\xe1"


def test_oversized_jpeg_block_is_refused_with_the_limit() -> None:
    huge = EmbeddedMetadata(xmp=b"x" * 70_000)

    with pytest.raises(ContainerError, match="at most 65533"):
        write(JPEG, "image/jpeg", huge)


def test_webp_chunk_running_past_the_end_is_a_container_error() -> None:
    broken = WEBP[:16] + (10**6).to_bytes(4, "little") + WEBP[20:]

    with pytest.raises(ContainerError, match="past the end"):
        read_metadata(broken, "image/webp")


def test_png_without_iend_is_a_container_error() -> None:
    with pytest.raises(ContainerError, match="truncated"):
        strip_metadata(PNG[:-12], "image/png")


def test_other_formats_have_no_metadata_to_read() -> None:
    assert read_metadata(b"GIF89a...", "image/gif").empty


def test_png_keyword_must_be_latin1_and_short() -> None:
    with pytest.raises(ContainerError):
        TextChunk.text("k" * 80, "value")
    with pytest.raises(ContainerError):
        TextChunk.text("ключ", "value")


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_any_text_round_trips_through_a_png_chunk(value: str) -> None:
    written = write(
        PNG,
        "image/png",
        EmbeddedMetadata(png_text=(TextChunk.text("parameters", value),)),
    )

    image = Image.open(io.BytesIO(written))
    image.load()
    assert image.info.get("parameters", "") == value


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload).to_bytes(4, "big")
    return len(payload).to_bytes(4, "big") + kind + payload + crc


def test_png_rewrite_keeps_every_other_byte_of_a_large_file() -> None:
    # Built by hand: 40 IDAT chunks of 100 KB (more than one copy step of the
    # reassembly), text before and after the image data, an eXIf to replace.
    head = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", bytes(13))
    old_text = _chunk(b"tEXt", b"parameters\x00old")
    kept_text = _chunk(b"tEXt", b"Comment\x00kept")
    idat = b"".join(_chunk(b"IDAT", bytes([n]) * 100_000) for n in range(40))
    late = _chunk(b"tEXt", b"parameters\x00late")
    tail = _chunk(b"IEND", b"")
    data = head + old_text + _chunk(b"eXIf", TIFF) + kept_text + idat + late + tail
    new_text = TextChunk.text("parameters", "new")

    written = write(
        data, "image/png", EmbeddedMetadata(exif=b"MM\x00*", png_text=(new_text,))
    )

    inserted = _chunk(b"tEXt", b"parameters\x00new") + _chunk(b"eXIf", b"MM\x00*")
    assert written == head + kept_text + inserted + idat + tail
    assert strip_metadata(written, "image/png") == head + idat + tail
