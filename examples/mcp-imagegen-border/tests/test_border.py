"""The example plugin's own tests, written with mcp-imagegen's plugin-author kit."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp_imagegen_border import BorderSettings, BorderStep
from PIL import Image

from mcp_imagegen.testing import PostProcessorContract, mcp_client


class TestBorderStepContract(PostProcessorContract):
    """``border`` passes the contract every post-processing step passes."""

    @pytest.fixture
    async def step(self) -> AsyncIterator[BorderStep]:
        settings = BorderSettings(width=4, color="#ff0000")
        async with BorderStep(settings, instance_name="frame") as step:
            yield step


@pytest.mark.anyio
async def test_a_configured_border_step_frames_images_served_over_mcp(
    tmp_path: Path,
) -> None:
    config = {
        "storage": {"file": {"directory": str(tmp_path)}},
        "postprocess": {"frame": {"type": "border", "width": 8, "color": "red"}},
    }

    async with mcp_client(config) as client:
        result = await client.call_tool(
            "generate_image",
            {"prompt": "a fox", "width": 64, "height": 64, "postprocess": ["frame"]},
        )
        [image] = result.structured_content["images"]  # type: ignore[index]
        stored = await client.read_resource(f"image://{image['id']}")

    assert (image["width"], image["height"]) == (80, 80)
    data = stored.contents[0].blob  # type: ignore[union-attr]
    framed = Image.open(io.BytesIO(__import__("base64").b64decode(data)))
    assert framed.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
