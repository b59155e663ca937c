"""transform_image and post-processing requests end to end over MCP (in memory)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp
import pytest
from mcp.types import BlobResourceContents, CallToolResult, TextContent
from PIL import Image

from mcp_imagegen._app import create_server
from mcp_imagegen._config import settings_from_dict

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[mcp.Client]:
    settings = settings_from_dict(
        {
            "storage": {
                "backend": "file",
                "file": {"directory": str(tmp_path / "images")},
            },
            "generation": {"postprocess": ["metadata"]},
            "postprocess": {
                "thumb": {"type": "resize", "max_side": 128},
                "brand": {"type": "watermark", "text": "example.com"},
            },
        }
    )
    async with mcp.Client(create_server(settings)) as connected:
        yield connected


def only_image(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    (image,) = result.structured_content["images"]
    return dict(image)


async def read_image(client: mcp.Client, image_id: str) -> bytes:
    result = await client.read_resource(f"image://{image_id}")
    (contents,) = result.contents
    assert isinstance(contents, BlobResourceContents)
    return base64.b64decode(contents.blob)


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_transform_stores_a_new_image_and_leaves_the_original_alone(
    client: mcp.Client,
) -> None:
    original = only_image(
        await client.call_tool(
            "generate_image",
            {"prompt": "a red fox in snow", "width": 512, "height": 384, "seed": 5},
        )
    )
    before = await read_image(client, original["id"])

    derived = only_image(
        await client.call_tool(
            "transform_image",
            {
                "image_id": original["id"],
                "postprocess": ["thumb", "brand"],
                "output_format": "webp",
            },
        )
    )

    assert derived["id"] != original["id"]
    assert derived["source_image_id"] == original["id"]
    assert (derived["mime_type"], derived["width"], derived["height"]) == (
        "image/webp",
        128,
        96,
    )
    data = await read_image(client, derived["id"])
    decoded = Image.open(io.BytesIO(data))
    assert (decoded.format, decoded.size) == ("WEBP", (128, 96))
    after = await read_image(client, original["id"])
    assert hashlib.sha256(after).digest() == hashlib.sha256(before).digest()


async def test_metadata_step_in_a_transform_names_the_source(
    client: mcp.Client,
) -> None:
    original = only_image(
        await client.call_tool("generate_image", {"prompt": "a lighthouse", "seed": 7})
    )

    derived = only_image(
        await client.call_tool(
            "transform_image",
            {"image_id": original["id"], "postprocess": ["thumb", "metadata"]},
        )
    )

    info = Image.open(io.BytesIO(await read_image(client, derived["id"]))).info
    recipe = json.loads(info["mcp-imagegen"])
    assert recipe["source_image_id"] == original["id"]
    assert recipe["prompt"] == "a lighthouse" and recipe["seed"] == 7


async def test_default_chain_embeds_the_recipe_in_generated_images(
    client: mcp.Client,
) -> None:
    image = only_image(
        await client.call_tool(
            "generate_image",
            {"prompt": "a cat", "negative_prompt": "dog", "seed": 3, "steps": 6},
        )
    )

    info = Image.open(io.BytesIO(await read_image(client, image["id"]))).info
    assert info["parameters"].startswith("a cat\nNegative prompt: dog\nSteps: 6, ")
    assert "Seed: 3, Size: 512x512" in info["parameters"]


async def test_request_output_format_jpeg_keeps_the_recipe_in_exif(
    client: mcp.Client,
) -> None:
    image = only_image(
        await client.call_tool(
            "generate_image", {"prompt": "a cat", "seed": 3, "output_format": "jpeg"}
        )
    )

    decoded = Image.open(io.BytesIO(await read_image(client, image["id"])))
    assert decoded.format == "JPEG"
    comment = decoded.getexif().get_ifd(0x8769)[0x9286]
    assert comment[8:].decode("utf-16-be").startswith("a cat\nSteps: ")


async def test_unknown_step_in_a_request_is_a_clear_tool_error(
    client: mcp.Client,
) -> None:
    result = await client.call_tool(
        "generate_image", {"prompt": "a cat", "postprocess": ["thumb", "sepia"]}
    )

    assert "unknown post-processing step 'sepia'" in error_text(result)


async def test_transform_of_a_missing_image_is_a_clear_tool_error(
    client: mcp.Client,
) -> None:
    missing = "20200101T000000000-000000000000"

    result = await client.call_tool(
        "transform_image", {"image_id": missing, "postprocess": ["thumb"]}
    )

    assert f"No image with id '{missing}'" in error_text(result)


async def test_output_format_conversion_after_the_chain_keeps_the_embedded_recipe(
    client: mcp.Client,
) -> None:
    original = only_image(
        await client.call_tool("generate_image", {"prompt": "a heron", "seed": 11})
    )

    derived = only_image(
        await client.call_tool(
            "transform_image",
            {
                "image_id": original["id"],
                "postprocess": ["thumb"],
                "output_format": "webp",
            },
        )
    )

    decoded = Image.open(io.BytesIO(await read_image(client, derived["id"])))
    assert decoded.format == "WEBP"
    comment = decoded.getexif().get_ifd(0x8769)[0x9286]
    assert comment[8:].decode("utf-16-be").startswith("a heron\nSteps: ")
