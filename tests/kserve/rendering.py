"""Deterministic test images shared by the test predictor and the tests.

An image depends only on (seed, width, height); its top-left 8x8 block has the
colour :func:`seed_color` of the seed, so a test can tell which seed the
predictor really used. PNGs carry what the predictor received in a text chunk.
"""

from __future__ import annotations

import functools
import io
import json
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

#: PNG text chunk holding the request as the predictor saw it.
RECEIVED_KEY = "kserve-received"


def seed_color(seed: int) -> tuple[int, int, int]:
    """Return the colour of the top-left block of the image for ``seed``."""
    return (seed * 37 + 11) % 256, (seed * 91 + 7) % 256, (seed * 53 + 3) % 256


@functools.lru_cache(maxsize=32)
def render_array(seed: int, width: int, height: int) -> np.ndarray:
    """Return an HxWx3 uint8 image: smooth colour fields plus fine grain.

    The grain makes PNGs about as large as real generated images (about 1.4 MB at
    1024x1024), so transfer and decoding costs are realistic.
    """
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    base = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    grain = rng.integers(-4, 5, (height, width, 1), dtype=np.int16)
    pixels = np.clip(np.asarray(base).astype(np.int16) + grain, 0, 255).astype(np.uint8)
    pixels[:8, :8] = seed_color(seed)
    pixels.flags.writeable = False
    return pixels


@functools.lru_cache(maxsize=32)
def _render_png(seed: int, width: int, height: int, received: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text(RECEIVED_KEY, received)
    buffer = io.BytesIO()
    Image.fromarray(render_array(seed, width, height)).save(
        buffer, format="PNG", pnginfo=info
    )
    return buffer.getvalue()


def render_png(seed: int, width: int, height: int, received: dict[str, Any]) -> bytes:
    """Return the PNG for ``seed`` carrying ``received`` as JSON in a text chunk."""
    return _render_png(seed, width, height, json.dumps(received, sort_keys=True))


def received_by_predictor(data: bytes) -> dict[str, Any]:
    """Return what the predictor received, read back from a PNG it produced."""
    with Image.open(io.BytesIO(data)) as image:
        text = image.info.get(RECEIVED_KEY)  # type: ignore[attr-defined]
    return json.loads(text) if text else {}


def corner_color(data: bytes) -> tuple[int, ...]:
    """Return the colour of the top-left pixel of an encoded image."""
    with Image.open(io.BytesIO(data)) as image:
        pixel = image.convert("RGB").getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel


def image_size(data: bytes) -> tuple[int, int]:
    """Return ``(width, height)`` of an encoded image."""
    with Image.open(io.BytesIO(data)) as image:
        return image.size
