"""Inline image data: the stored bytes; large ones base64-encoded off the loop."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp
import numpy as np
import pytest
from mcp.types import ImageContent
from PIL import Image

from mcp_imagegen._mcp import content
from tests.conftest import stored_file


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        content.BASE64_STEP_BYTES - 1,
        content.BASE64_STEP_BYTES,
        content.BASE64_STEP_BYTES + 1,
        2 * content.BASE64_STEP_BYTES + 2,
    ],
)
def test_base64_steps_join_into_the_whole_encoding(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, np.uint8).tobytes()

    assert content._base64_text(data) == base64.b64encode(data).decode()


def _noise_png(side: int) -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.anyio
async def test_large_inline_data_is_the_stored_bytes_encoded_off_the_loop(
    connect: Callable[..., mcp.Client],
    image_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    png = _noise_png(512)  # ~790 KB: several encoding steps
    assert len(png) > 2 * content.BASE64_STEP_BYTES
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    async with connect({"server": {"max_inline_bytes": 4_000_000}}) as client:
        ingested = await client.call_tool("ingest_image", {"data": uri})
        assert ingested.structured_content is not None
        [image] = ingested.structured_content["images"]
        image_id = image["id"]
        # A spy at the boundary: the real encoder, noting each call's thread.
        threads: list[int] = []
        real = base64.b64encode

        def b64encode(data: Any, *args: Any) -> bytes:
            threads.append(threading.get_ident())
            return real(data, *args)

        monkeypatch.setattr(content.base64, "b64encode", b64encode)
        result = await client.call_tool(
            "get_image", {"image_id": image_id, "inline": "full"}
        )

    [block] = [b for b in result.content if isinstance(b, ImageContent)]
    assert (
        base64.b64decode(block.data)
        == stored_file(image_dir, image_id, "png").read_bytes()
    )
    assert len(threads) >= 3  # step by step ...
    assert threading.get_ident() not in threads  # ... and never on the event loop
