"""Per-call overhead: cheap work stays on the event loop, costly work goes to a thread.

A worker-thread call costs ~0.07 ms even on a quiet machine (more under load),
several times what hashing a small image or reading a header costs. These tests
spy on ``anyio.to_thread.run_sync`` (the library boundary, not the code under
test) to see which work is sent to a thread.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from PIL import Image

from mcp_imagegen._app import build_service
from mcp_imagegen._config import Settings
from mcp_imagegen._mcp.content import image_content
from mcp_imagegen._plugins import PluginManager
from mcp_imagegen._service.finishing import INLINE_HASH_BYTES, Finisher
from mcp_imagegen.models import GeneratedImage, GenerationRequest, ProcessingContext
from tests.conftest import make_record, png_bytes

pytestmark = pytest.mark.anyio


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions run in worker threads while the test runs."""
    names: list[str] = []
    real = anyio.to_thread.run_sync

    async def run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        names.append(getattr(func, "__name__", repr(func)))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", run_sync)
    return names


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: ``side``² random RGB pixels."""
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def generated(data: bytes, side: int) -> tuple[GeneratedImage, ProcessingContext]:
    request = GenerationRequest(prompt="a square", width=side, height=side)
    image = GeneratedImage(data=data, mime_type="image/png", width=side, height=side)
    return image, ProcessingContext(request=request, backend="placeholder")


async def test_a_small_image_is_hashed_on_the_loop_without_a_thread_call(
    threaded: list[str],
) -> None:
    data = png_bytes(size=64)
    image, context = generated(data, 64)

    _, digest, _ = await Finisher().finish(image, [], context)

    assert digest == hashlib.sha256(data).hexdigest()
    assert threaded == []


async def test_a_large_image_is_hashed_in_a_worker_thread(
    threaded: list[str],
) -> None:
    data = noise_png(512)  # ~770 KB: milliseconds of hashing would stall the loop
    assert len(data) > INLINE_HASH_BYTES
    image, context = generated(data, 512)

    _, digest, _ = await Finisher().finish(image, [], context)

    assert digest == hashlib.sha256(data).hexdigest()
    assert threaded == ["_sha256"]


@pytest.fixture
def make_service(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., Any]:
    def make(preview_max_side: int) -> Any:
        settings = make_settings({"server": {"preview_max_side": preview_max_side}})
        return build_service(settings, plugin_manager)

    return make


async def test_an_image_that_fits_the_preview_goes_out_as_is_without_a_thread_call(
    make_service: Callable[..., Any], threaded: list[str], image_dir: Path
) -> None:
    data = png_bytes(size=64)
    record = make_record(data, width=64, height=64)
    async with make_service(512) as service:
        await service.storage.save(record, data)
        threaded.clear()

        content, _ = await image_content(service, [(record, data)], "preview")

    assert content[0].type == "image"
    assert content[0].data == base64.b64encode(data).decode()
    assert threaded == []


async def test_an_image_larger_than_the_preview_is_shrunk_in_a_worker_thread(
    make_service: Callable[..., Any], threaded: list[str], image_dir: Path
) -> None:
    data = png_bytes(size=128)
    record = make_record(data, width=128, height=128)
    async with make_service(64) as service:
        await service.storage.save(record, data)
        threaded.clear()

        content, _ = await image_content(service, [(record, data)], "preview")

    assert content[0].type == "image"
    assert content[0].mime_type == "image/jpeg"
    assert threaded == ["make_preview"]
