"""Real images for the imageops tests: photo-like pixels, encoded by Pillow."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mcp_imagegen import GeneratedImage, GenerationRequest, ProcessingContext
from mcp_imagegen.imaging import describe_image

MIME_BY_FORMAT = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}


def photo_pixels(
    width: int, height: int, *, mode: str = "RGB", seed: int = 7
) -> Image.Image:
    """Smooth gradients plus grain: compresses like a photo, not like flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack(
        [
            x * 255 / max(1, width - 1),
            y * 255 / max(1, height - 1),
            128 + 100 * np.sin((x + y) / 23.0),
        ],
        axis=-1,
    )
    rgb += rng.normal(0, 10, rgb.shape)
    image = Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")
    if mode == "RGBA":
        alpha = np.full((height, width), 255, np.uint8)
        alpha[:, : width // 2] = 0  # left half fully transparent
        image.putalpha(Image.fromarray(alpha, "L"))
    elif mode != "RGB":
        image = image.convert(mode)
    return image


def encode(pixels: Image.Image, fmt: str = "PNG", **options: Any) -> GeneratedImage:
    """Encode ``pixels`` and wrap them as a backend would return them."""
    buffer = io.BytesIO()
    pixels.save(buffer, format=fmt, **options)
    return GeneratedImage(
        data=buffer.getvalue(),
        mime_type=MIME_BY_FORMAT[fmt],
        width=pixels.width,
        height=pixels.height,
        seed=1234,
        model="test-model",
    )


def reopen(image: GeneratedImage) -> Image.Image:
    """Decode ``image`` and check its declared mime type and size match the bytes."""
    mime, width, height = describe_image(image.data)
    assert (image.mime_type, image.width, image.height) == (mime, width, height)
    decoded = Image.open(io.BytesIO(image.data))
    decoded.load()
    return decoded


@pytest.fixture
def make_image() -> Callable[..., GeneratedImage]:
    """``make_image(w, h, mode="RGB", fmt="PNG", **save_options)``."""

    def make(
        width: int = 256,
        height: int = 256,
        *,
        mode: str = "RGB",
        fmt: str = "PNG",
        **options: Any,
    ) -> GeneratedImage:
        return encode(photo_pixels(width, height, mode=mode), fmt, **options)

    return make


def make_context(
    *, output_format: str | None = None, **request: Any
) -> ProcessingContext:
    fields: dict[str, Any] = {
        "prompt": "a lighthouse on a cliff at dusk, watercolor",
        "negative_prompt": "blurry, text",
        "width": 512,
        "height": 512,
        "seed": 1234,
        "steps": 30,
        "guidance_scale": 7.5,
    }
    fields.update(request)
    return ProcessingContext(
        request=GenerationRequest(**fields),
        backend="sdxl",
        seed=fields["seed"],
        model="test-model",
        output_format=output_format,
    )


@pytest.fixture
def context() -> ProcessingContext:
    return make_context()
