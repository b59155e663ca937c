"""edit_image and ingest_image through MCP on the real KServe test model server.

MCP client → server → ``KServeBackend`` → a real ``kserve.ModelServer``
(``tests/kserve/predictor.py``) speaking the V1 and V2 contracts. The predictor
echoes the sha256 of the image and mask bytes it decoded, so each test checks
that exactly what docs/editing.md promises arrived: a stored RGB PNG of the edit
size (and a greyscale PNG mask of it) byte for byte, anything else re-encoded as
a PNG of the edit size.
"""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest
from mcp.types import BlobResourceContents, CallToolResult, TextContent
from PIL import Image

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings, settings_from_dict
from mcp_imagegen._plugins import PluginManager
from tests.editing.conftest import picture, stored_count
from tests.kserve.conftest import kserve_server  # noqa: F401 (the fixture)
from tests.kserve.rendering import received_by_predictor
from tests.kserve.support import FAST_RETRIES, KServeServer

pytestmark = [pytest.mark.anyio, pytest.mark.kserve]

EDITING = {"image_input": True, "mask": True}
#: Backend instances, all of type "kserve", on the one test server.
INSTANCES: dict[str, dict[str, Any]] = {
    "v1": {"model": "sd-v1", **EDITING},
    "v2": {"model": "sd-v2", "protocol": "v2", **EDITING},
    "v2-inputs": {
        "model": "sd-v2",
        "protocol": "v2",
        "parameters_in": "inputs",
        **EDITING,
    },
    "img2img-only": {"model": "sd-v1", "image_input": True},
    "text-only": {"model": "sd-v1"},
    # sd-v1 echoes keys it does not know verbatim: renamed fields come back
    # as the base64 text the backend sent, to look at the re-encoded pixels.
    "echo": {
        "model": "sd-v1",
        "field_names": {"image": "init_image", "mask": "mask_png"},
        **EDITING,
    },
}
#: Keep the predictor's PNG (and its "received" text chunk) as it came.
AS_RETURNED: dict[str, Any] = {"postprocess": [], "output_format": "png"}

IMAGE = picture((96, 64), seed=3)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def mask(mode: str = "L", size: tuple[int, int] = (96, 64)) -> bytes:
    """Black (keep) with a white (repaint) box, as a ``mode`` PNG."""
    grey = Image.new("L", size, 0)
    grey.paste(255, (20, 10, 60, 40))
    return png(grey.convert(mode))


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def settings(kserve_server: KServeServer, tmp_path: Path) -> Settings:  # noqa: F811
    backends = {
        name: {"type": "kserve", "url": kserve_server.url, **FAST_RETRIES, **table}
        for name, table in INSTANCES.items()
    }
    return settings_from_dict(
        {
            "generation": {"backend": "v1"},
            "backends": backends,
            "storage": {"backend": "file", "file": {"directory": str(tmp_path)}},
        }
    )


@pytest.fixture
def client(settings: Settings, plugin_manager: PluginManager) -> mcp.Client:
    return mcp.Client(create_server(settings, plugin_manager))


def info(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    [image] = result.structured_content["images"]
    return dict(image)


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    [content] = result.content
    assert isinstance(content, TextContent)
    return content.text


async def read_bytes(client: mcp.Client, image_id: str) -> bytes:
    [content] = (await client.read_resource(f"image://{image_id}")).contents
    assert isinstance(content, BlobResourceContents)
    return base64.b64decode(content.blob)


async def ingest(client: mcp.Client, data: bytes) -> str:
    return str(
        info(await client.call_tool("ingest_image", {"data": data_uri(data)}))["id"]
    )


@pytest.mark.parametrize("backend", ["v1", "v2", "v2-inputs"])
async def test_an_edit_by_id_sends_the_stored_bytes_mask_and_strength(
    client: mcp.Client, backend: str
) -> None:
    async with client:
        source = await ingest(client, IMAGE)
        the_mask = mask()
        edited = info(
            await client.call_tool(
                "edit_image",
                {
                    "image": source,
                    "mask": data_uri(the_mask),
                    "prompt": "make it night",
                    "strength": 0.35,
                    "seed": 11,
                    "backend": backend,
                    **AS_RETURNED,
                },
            )
        )
        stored = await read_bytes(client, edited["id"])
        record = await client.call_tool("get_image", {"image_id": edited["id"]})
    received = received_by_predictor(stored)
    # The ingested PNG is RGB and of the edit size: it travels byte for byte.
    assert received["image_sha256"] == sha256(IMAGE)
    assert received["image_bytes"] == len(IMAGE)
    assert received["mask_image_sha256"] == sha256(the_mask)
    assert received["strength"] == pytest.approx(0.35)
    assert received["prompt"] == "make it night"
    assert (edited["width"], edited["height"]) == (96, 64)
    assert edited["backend"] == backend
    assert record.structured_content is not None
    assert record.structured_content["source_image_id"] == source
    assert record.structured_content["parameters"]["strength"] == pytest.approx(0.35)


@pytest.mark.parametrize("backend", ["v1", "v2"])
async def test_image_to_image_by_uri_sends_no_mask(
    client: mcp.Client, backend: str
) -> None:
    async with client:
        source = await ingest(client, IMAGE)
        edited = info(
            await client.call_tool(
                "edit_image",
                {
                    "image": f"image://{source}",
                    "prompt": "a variation",
                    "strength": 0.8,
                    "backend": backend,
                    **AS_RETURNED,
                },
            )
        )
        received = received_by_predictor(await read_bytes(client, edited["id"]))
    assert received["image_sha256"] == sha256(IMAGE)
    assert "mask_image_sha256" not in received
    assert received["strength"] == pytest.approx(0.8)


async def test_other_inputs_arrive_as_png_of_the_edit_size(
    client: mcp.Client,
) -> None:
    # An RGBA input, an RGB mask and another edit size: all re-encoded.
    rgba = Image.open(io.BytesIO(IMAGE)).convert("RGBA")
    async with client:
        edited = info(
            await client.call_tool(
                "edit_image",
                {
                    "image": data_uri(png(rgba)),
                    "mask": data_uri(mask("RGB")),
                    "prompt": "larger",
                    "width": 144,
                    "backend": "echo",
                    **AS_RETURNED,
                },
            )
        )
        received = received_by_predictor(await read_bytes(client, edited["id"]))
    assert (edited["width"], edited["height"]) == (144, 96)
    image = Image.open(io.BytesIO(base64.b64decode(received["init_image"])))
    sent_mask = Image.open(io.BytesIO(base64.b64decode(received["mask_png"])))
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (144, 96))
    assert (sent_mask.format, sent_mask.mode, sent_mask.size) == ("PNG", "L", (144, 96))
    # The mask's box is still white where it was, scaled by 1.5.
    assert sent_mask.getpixel((60, 37)) == 255
    assert sent_mask.getpixel((2, 2)) == 0


async def test_a_backend_without_image_input_names_those_that_can(
    client: mcp.Client, tmp_path: Path
) -> None:
    async with client:
        refused = await client.call_tool(
            "edit_image",
            {"image": data_uri(IMAGE), "prompt": "p", "backend": "text-only"},
        )
        no_mask = await client.call_tool(
            "edit_image",
            {
                "image": data_uri(IMAGE),
                "mask": data_uri(mask()),
                "prompt": "p",
                "backend": "img2img-only",
            },
        )
        # The server keeps serving: the same input on a backend that can.
        info(
            await client.call_tool(
                "edit_image", {"image": data_uri(IMAGE), "prompt": "p", **AS_RETURNED}
            )
        )
    text = error_text(refused)
    assert "'text-only' does not take an input image" in text
    for able in ("echo", "img2img-only", "v1", "v2", "v2-inputs"):
        assert repr(able) in text
    text = error_text(no_mask)
    assert "'img2img-only' does not take a mask" in text
    assert "'img2img-only' or" not in text and "'v1'" in text
    # Nothing was stored by the refusals: one image, the last edit.
    assert await anyio.to_thread.run_sync(stored_count, tmp_path) == 1
