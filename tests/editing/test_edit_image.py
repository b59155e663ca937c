"""edit_image and ingest_image through a real in-memory MCP session: what works."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp
import pytest
from mcp.types import BlobResourceContents, CallToolResult, TextResourceContents
from PIL import Image, ImageChops

from tests.editing.conftest import ImageServer, picture

pytestmark = pytest.mark.anyio

NO_CHAIN: dict[str, Any] = {"postprocess": []}


def data_uri(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def info(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result
    assert result.structured_content is not None
    [image] = result.structured_content["images"]
    return dict(image)


async def read_image(client: mcp.Client, image_id: str) -> Image.Image:
    [content] = (await client.read_resource(f"image://{image_id}")).contents
    assert isinstance(content, BlobResourceContents)
    return Image.open(io.BytesIO(base64.b64decode(content.blob))).convert("RGB")


def mask_png(size: tuple[int, int], box: tuple[int, int, int, int]) -> bytes:
    """Black (keep) everywhere but a white (repaint) ``box``."""
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_list_backends_shows_image_input_and_mask(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        result = await client.call_tool("list_backends", {})
    assert result.structured_content is not None
    [placeholder] = [
        b for b in result.structured_content["backends"] if b["name"] == "placeholder"
    ]
    assert placeholder["capabilities"]["image_input"] is True
    assert placeholder["capabilities"]["mask"] is True


async def test_edit_of_a_stored_image_names_its_source(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        source = info(
            await client.call_tool(
                "generate_image", {"prompt": "a cat", "width": 128, "height": 96}
            )
        )
        edited = info(
            await client.call_tool(
                "edit_image",
                {"image": f"image://{source['id']}", "prompt": "the cat at night"},
            )
        )
        shown = await client.call_tool("get_image", {"image_id": edited["id"]})
        [meta] = (
            await client.read_resource(f"image://{edited['id']}/metadata")
        ).contents
        image = await read_image(client, edited["id"])

    # Default size: the input's.
    assert (edited["width"], edited["height"]) == (128, 96)
    assert image.size == (128, 96)
    assert edited["source_image_id"] == source["id"]
    assert edited["origin"] is None
    assert shown.structured_content is not None
    assert shown.structured_content["source_image_id"] == source["id"]
    assert edited["parameters"]["strength"] == 0.6
    assert edited["prompt"] == "the cat at night"
    assert isinstance(meta, TextResourceContents)
    assert json.loads(meta.text)["source_image_id"] == source["id"]


async def test_the_recipe_embeds_lineage_and_strength(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        edited = info(
            await client.call_tool(
                "edit_image",
                {"image": data_uri(picture()), "prompt": "x", "strength": 0.25},
            )
        )
        [content] = (await client.read_resource(f"image://{edited['id']}")).contents
    assert isinstance(content, BlobResourceContents)
    stored = Image.open(io.BytesIO(base64.b64decode(content.blob)))
    recipe = json.loads(stored.info["mcp-imagegen"])
    assert recipe["origin"] == "upload"
    assert recipe["strength"] == 0.25
    assert edited["origin"] == "upload"


async def test_strength_zero_keeps_the_input_exactly(
    connect: Callable[..., mcp.Client],
) -> None:
    original = Image.open(io.BytesIO(picture())).convert("RGB")
    async with connect() as client:
        edited = info(
            await client.call_tool(
                "edit_image",
                {"image": data_uri(picture()), "prompt": "x", "strength": 0.0}
                | NO_CHAIN,
            )
        )
        image = await read_image(client, edited["id"])
    assert image.size == original.size
    assert ImageChops.difference(image, original).getbbox() is None


async def test_a_seed_reproduces_an_edit_and_another_seed_changes_it(
    connect: Callable[..., mcp.Client],
) -> None:
    arguments = {"image": data_uri(picture()), "prompt": "x", "seed": 7} | NO_CHAIN
    async with connect() as client:
        first = await read_image(
            client, info(await client.call_tool("edit_image", arguments))["id"]
        )
        again = await read_image(
            client, info(await client.call_tool("edit_image", arguments))["id"]
        )
        other = await read_image(
            client,
            info(await client.call_tool("edit_image", arguments | {"seed": 8}))["id"],
        )
    assert ImageChops.difference(first, again).getbbox() is None
    assert ImageChops.difference(first, other).getbbox() is not None


async def test_masked_out_pixels_are_unchanged(
    connect: Callable[..., mcp.Client],
) -> None:
    original = Image.open(io.BytesIO(picture())).convert("RGB")
    box = (16, 16, 64, 48)
    async with connect() as client:
        edited = info(
            await client.call_tool(
                "edit_image",
                {
                    "image": data_uri(picture()),
                    "mask": data_uri(mask_png(original.size, box)),
                    "prompt": "x",
                    "strength": 1.0,
                }
                | NO_CHAIN,
            )
        )
        image = await read_image(client, edited["id"])
    changed = ImageChops.difference(image, original).getbbox()
    assert changed is not None  # the white box was repainted...
    left, top, right, bottom = changed
    # ...and nothing outside it moved.
    assert box[0] <= left and box[1] <= top and right <= box[2] and bottom <= box[3]
    assert edited["parameters"]["mask"] == "upload"


async def test_a_mask_of_the_image_size_is_resized_with_it(
    connect: Callable[..., mcp.Client],
) -> None:
    original = Image.open(io.BytesIO(picture())).convert("RGB")  # 96x64
    async with connect() as client:
        edited = info(
            await client.call_tool(
                "edit_image",
                {
                    "image": data_uri(picture()),
                    "mask": data_uri(mask_png(original.size, (0, 0, 48, 64))),
                    "prompt": "x",
                    "strength": 1.0,
                    "width": 192,
                }
                | NO_CHAIN,
            )
        )
        image = await read_image(client, edited["id"])
    # A lone width keeps the aspect ratio; the mask was scaled to 192x128.
    assert image.size == (192, 128)
    resized = original.resize((192, 128), Image.Resampling.LANCZOS)
    right_half = (100, 0, 192, 128)
    assert (
        ImageChops.difference(
            image.crop(right_half), resized.crop(right_half)
        ).getbbox()
        is None
    )


async def test_default_size_is_fitted_to_the_limits(
    connect: Callable[..., mcp.Client],
) -> None:
    # 300x100 with max_side 256 and multiple 8: scaled to 256 wide, 85 → 88 high.
    async with connect({"limits": {"max_side": 256}}) as client:
        edited = info(
            await client.call_tool(
                "edit_image",
                {"image": data_uri(picture((300, 100))), "prompt": "x"} | NO_CHAIN,
            )
        )
    assert (edited["width"], edited["height"]) == (256, 88)


async def test_ingest_then_edit_and_list(
    connect: Callable[..., mcp.Client], tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "photo.png").write_bytes(picture())
    async with connect({"inputs": {"allowed_dirs": [str(allowed)]}}) as client:
        ingested = info(
            await client.call_tool("ingest_image", {"path": str(allowed / "photo.png")})
        )
        [content] = (await client.read_resource(f"image://{ingested['id']}")).contents
        edited = info(
            await client.call_tool(
                "edit_image", {"image": ingested["id"], "prompt": "x"}
            )
        )
        listed = await client.call_tool("list_images", {})
    assert ingested["origin"] == "file:/photo.png"
    assert ingested["backend"] == "ingest"
    assert (ingested["width"], ingested["height"]) == (96, 64)
    assert isinstance(content, BlobResourceContents)
    assert base64.b64decode(content.blob) == picture()  # stored as it is
    assert edited["source_image_id"] == ingested["id"]
    assert listed.structured_content is not None
    assert {i["id"] for i in listed.structured_content["images"]} == {
        ingested["id"],
        edited["id"],
    }


async def test_ingest_from_an_allowed_host_records_the_url_without_query(
    connect: Callable[..., mcp.Client], image_server: ImageServer
) -> None:
    settings = {
        "inputs": {"allowed_hosts": ["127.0.0.1"], "allow_private_addresses": True}
    }
    url = image_server.url("/picture.png?token=s3cr3t")
    async with connect(settings) as client:
        ingested = info(await client.call_tool("ingest_image", {"url": url}))
        edited = info(
            await client.call_tool(
                "edit_image", {"image": url, "prompt": "x", "strength": 0.5}
            )
        )
    origin = f"http://127.0.0.1:{image_server.port}/picture.png"
    assert ingested["origin"] == origin
    assert edited["origin"] == origin
    assert "s3cr3t" not in json.dumps([ingested, edited])


async def test_a_redirect_within_allowed_hosts_is_followed(
    connect: Callable[..., mcp.Client], image_server: ImageServer
) -> None:
    settings = {
        "inputs": {
            "allowed_hosts": ["127.0.0.1", "localhost"],
            "allow_private_addresses": True,
        }
    }
    target = image_server.url("/picture.png", host="localhost")
    async with connect(settings) as client:
        ingested = info(
            await client.call_tool(
                "ingest_image", {"url": image_server.url(f"/redirect?to={target}")}
            )
        )
    assert ingested["origin"] == target
    assert image_server.requests == ["/redirect", "/picture.png"]
    # Connected to the checked address, yet the name is what the server sees.
    assert image_server.hosts == [
        f"127.0.0.1:{image_server.port}",
        f"localhost:{image_server.port}",
    ]


async def test_a_jpeg_input_reaches_the_backend_as_the_same_pixels(
    connect: Callable[..., mcp.Client],
) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(picture())).save(buffer, format="JPEG", quality=95)
    async with connect() as client:
        edited = info(
            await client.call_tool(
                "edit_image",
                {
                    "image": data_uri(buffer.getvalue(), "image/jpeg"),
                    "prompt": "x",
                    "strength": 0.0,
                }
                | NO_CHAIN,
            )
        )
        image = await read_image(client, edited["id"])
    jpeg = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    assert edited["mime_type"] == "image/png"
    assert ImageChops.difference(image, jpeg).getbbox() is None
