"""verify_image: the cheap PNG check accepts exactly what a full decode accepts."""

from __future__ import annotations

import io
import re
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mcp_imagegen.imaging import ImageDecodeError, open_image, verify_image


def _png(
    mode: str = "RGB", size: tuple[int, int] = (37, 23), **options: object
) -> bytes:
    image = Image.new(mode, size)
    pixels = range(size[0] * size[1])
    bands = len(image.getbands())
    image.putdata(  # varied pixels, so the image data is not one repeated byte
        [(i * 7919) % 251 for i in pixels]
        if bands == 1
        else [tuple((i * k) % 251 for k in range(1, bands + 1)) for i in pixels]
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _build(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG from chunks, every CRC correct (so only the content can be wrong)."""
    out = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in chunks:
        crc = zlib.crc32(kind + body)
        out.append(struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc))
    return b"".join(out)


def _with_rows(data: bytes, change: object) -> bytes:
    """``data`` with its inflated image rows passed through ``change``."""
    chunks = _chunks(data)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = change(raw)  # type: ignore[operator]
    rest = [c for c in chunks if c[0] != b"IDAT"]
    return _build([*rest[:-1], (b"IDAT", zlib.compress(rows)), rest[-1]])


def _outcome(check: object, data: bytes) -> tuple[str, tuple[int, int]] | str:
    try:
        image = check(data)  # type: ignore[operator]
        return image.mode, image.size
    except ImageDecodeError as exc:
        # Pillow names its BytesIO object, whose address differs between calls.
        return "error: " + re.sub(r" at 0x[0-9a-f]+", "", str(exc))


VALID = {
    "rgb": _png("RGB"),
    "rgba": _png("RGBA"),
    "grey": _png("L"),
    "grey-alpha": _png("LA"),
    "grey-16": _png("I;16"),
    "palette": _png("P"),
    "level-1": _png("RGB", compress_level=1),
    "optimized": _png("RGB", optimize=True),
}


def test_a_generated_png_is_checked_without_decoding_its_pixels() -> None:
    image = verify_image(VALID["rgb"])
    assert image.size == (37, 23) and image.format == "PNG"
    # Still has its tiles: nothing was decoded (open_image decodes them all).
    assert image.tile
    assert not open_image(VALID["rgb"]).tile


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_images_pass_as_with_a_full_decode(name: str) -> None:
    data = VALID[name]
    assert _outcome(verify_image, data) == _outcome(open_image, data)
    assert verify_image(data).tobytes() == open_image(data).tobytes()


CORRUPT = {
    "bad filter type": lambda raw: bytes([9]) + raw[1:],
    "a row short": lambda raw: raw[: -(len(raw) // 23)],
    "a byte too many": lambda raw: raw + b"\0",
    "empty image data": lambda raw: b"",
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_image_data_of_the_wrong_shape_is_refused_as_by_a_full_decode(
    name: str,
) -> None:
    data = _with_rows(VALID["rgb"], CORRUPT[name])
    outcome = _outcome(verify_image, data)
    assert outcome == _outcome(open_image, data)
    # Pillow accepts a missing last row and ignores data past it; verify_image
    # has a doubt about both, decodes, and so gives the same verdict.
    if name in ("bad filter type", "empty image data"):
        assert str(outcome).startswith("error:")


def test_a_zlib_bomb_in_the_image_data_is_not_inflated_to_the_end() -> None:
    bomb = _with_rows(VALID["rgb"], lambda raw: raw + bytes(200_000_000))
    assert len(bomb) < 1_000_000
    assert _outcome(verify_image, bomb) == _outcome(open_image, bomb)


def test_too_many_pixels_is_refused_before_any_check() -> None:
    with pytest.raises(ImageDecodeError, match="more than the limit of 100 pixels"):
        verify_image(VALID["rgb"], max_pixels=100)


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(VALID)),
    position=st.integers(min_value=0, max_value=10_000),
    value=st.integers(min_value=0, max_value=255),
    cut=st.booleans(),
)
def test_any_damaged_file_gets_the_full_decodes_verdict(
    name: str, position: int, value: int, cut: bool
) -> None:
    data = bytearray(VALID[name])
    position %= len(data)
    if cut:
        del data[position:]
    else:
        data[position] = value
    assert _outcome(verify_image, bytes(data)) == _outcome(open_image, bytes(data))


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(["rgb", "rgba", "grey", "grey-alpha", "grey-16"]),
    position=st.integers(min_value=0, max_value=100_000),
    value=st.integers(min_value=0, max_value=255),
)
def test_any_changed_image_data_with_good_checksums_gets_the_same_verdict(
    name: str, position: int, value: int
) -> None:
    def change(raw: bytes) -> bytes:
        at = position % len(raw)
        return raw[:at] + bytes([value]) + raw[at + 1 :]

    data = _with_rows(VALID[name], change)
    assert _outcome(verify_image, data) == _outcome(open_image, data)
