"""The crop, rotate and flip steps, checked pixel by pixel on real images."""

from __future__ import annotations

import base64
import io
import re
import tomllib
from pathlib import Path
from typing import Any

import mcp
import numpy as np
import pydantic
import pytest
from mcp.types import BlobResourceContents
from PIL import Image

from mcp_imagegen import GeneratedImage, PostProcessingError, ProcessingContext
from mcp_imagegen._app import create_server
from mcp_imagegen._config import settings_from_dict
from mcp_imagegen_imageops.crop import CropSettings, CropStep
from mcp_imagegen_imageops.flip import FlipSettings, FlipStep
from mcp_imagegen_imageops.rotate import RotateSettings, RotateStep
from tests.imageops.conftest import encode, reopen

pytestmark = pytest.mark.anyio

W, H = 40, 20
GREY = (90, 90, 90)
RED = (255, 0, 0)
#: Where the one red pixel of the test image is.
MARK = (3, 2)


def marked(fmt: str = "PNG", mode: str = "RGB") -> GeneratedImage:
    """A W x H grey image with one red pixel at MARK (lossless PNG by default)."""
    pixels = np.full((H, W, 3), GREY, np.uint8)
    pixels[MARK[1], MARK[0]] = RED
    image = Image.fromarray(pixels, "RGB")
    return encode(image.convert(mode) if mode != "RGB" else image, fmt)


def red_pixels(image: GeneratedImage) -> list[tuple[int, int]]:
    """Return the (x, y) of every red pixel."""
    pixels = np.asarray(reopen(image).convert("RGB"))
    ys, xs = np.nonzero(np.all(pixels == RED, axis=-1))
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


async def run(step: Any, image: GeneratedImage, context: ProcessingContext) -> Any:
    return await step.process(image, context)


# -- flip ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "where"),
    [
        ("horizontal", (W - 1 - MARK[0], MARK[1])),
        ("vertical", (MARK[0], H - 1 - MARK[1])),
        ("both", (W - 1 - MARK[0], H - 1 - MARK[1])),
    ],
)
async def test_flip_moves_the_marked_pixel_where_it_must(
    context: ProcessingContext, direction: str, where: tuple[int, int]
) -> None:
    step = FlipStep(FlipSettings(direction=direction))  # type: ignore[arg-type]

    result = await run(step, marked(), context)

    assert (result.width, result.height) == (W, H)
    assert red_pixels(result) == [where]


# -- rotate ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("angle", "size", "where"),
    [
        # Clockwise: the top-left corner goes to the top-right.
        (90, (H, W), (H - 1 - MARK[1], MARK[0])),
        (180, (W, H), (W - 1 - MARK[0], H - 1 - MARK[1])),
        (270, (H, W), (MARK[1], W - 1 - MARK[0])),
        (-90, (H, W), (MARK[1], W - 1 - MARK[0])),
    ],
)
async def test_quarter_turns_move_pixels_exactly_clockwise(
    context: ProcessingContext,
    angle: float,
    size: tuple[int, int],
    where: tuple[int, int],
) -> None:
    result = await run(RotateStep(RotateSettings(angle=angle)), marked(), context)

    assert (result.width, result.height) == size
    assert red_pixels(result) == [where]


async def test_a_whole_turn_passes_the_image_through(
    context: ProcessingContext,
) -> None:
    image = marked()

    result = await run(RotateStep(RotateSettings(angle=360)), image, context)

    assert result.data == image.data


async def test_any_angle_expands_and_fills_the_corners(
    context: ProcessingContext,
) -> None:
    step = RotateStep(RotateSettings(angle=45, fill="transparent"))

    result = await run(step, marked(), context)

    decoded = reopen(result)
    # A 40x20 box turned by 45 degrees needs (40+20)/sqrt(2) = 42.4 on each side
    # (Pillow rounds the canvas up).
    assert 42 <= result.width <= 44 and result.height == result.width
    assert decoded.mode == "RGBA"
    assert decoded.getpixel((0, 0)) == (0, 0, 0, 0)  # an uncovered corner
    centre = decoded.getpixel((result.width // 2, result.height // 2))
    assert isinstance(centre, tuple) and centre[3] == 255 and centre[:3] == GREY


async def test_any_angle_without_expand_keeps_the_size_and_uses_the_fill(
    context: ProcessingContext,
) -> None:
    step = RotateStep(RotateSettings(angle=30, expand=False, fill="#00ff00"))

    result = await run(step, marked(fmt="JPEG"), context)

    decoded = reopen(result)
    assert (result.mime_type, result.width, result.height) == ("image/jpeg", W, H)
    corner = decoded.convert("RGB").getpixel((0, 0))
    assert isinstance(corner, tuple)
    # JPEG is lossy: near green, not exactly.
    assert corner[1] > 200 and corner[0] < 60 and corner[2] < 60


# -- crop ------------------------------------------------------------------------


async def test_a_box_keeps_exactly_that_box(context: ProcessingContext) -> None:
    step = CropStep(CropSettings(left=2, top=1, width=10, height=8))

    result = await run(step, marked(), context)

    assert (result.width, result.height) == (10, 8)
    assert red_pixels(result) == [(MARK[0] - 2, MARK[1] - 1)]


async def test_a_box_past_the_edge_is_clipped_to_the_image(
    context: ProcessingContext,
) -> None:
    step = CropStep(CropSettings(left=30, top=0, width=50, height=50))

    result = await run(step, marked(), context)

    assert (result.width, result.height) == (W - 30, H)


async def test_a_box_outside_the_image_fails_naming_the_step(
    context: ProcessingContext,
) -> None:
    step = CropStep(CropSettings(left=50, width=10, height=10), instance_name="banner")

    with pytest.raises(PostProcessingError, match=r"'banner' \(crop\).*left=50.*40x20"):
        await run(step, marked(), context)


@pytest.mark.parametrize(
    ("options", "box"),
    [
        ({}, (10, 0, 30, 20)),  # default: a centred square
        ({"aspect": "1:1", "gravity": "left"}, (0, 0, 20, 20)),
        ({"aspect": "1:1", "gravity": "bottom-right"}, (20, 0, 40, 20)),
        ({"aspect": "4:1", "gravity": "top"}, (0, 0, 40, 10)),
        ({"aspect": "4:1", "gravity": "bottom"}, (0, 10, 40, 20)),
        ({"aspect": "4:1"}, (0, 5, 40, 15)),
    ],
)
def test_aspect_crops_the_largest_area_placed_by_gravity(
    options: dict[str, Any], box: tuple[int, int, int, int]
) -> None:
    assert CropStep(CropSettings(**options)).plan(W, H) == box


async def test_aspect_crop_keeps_the_marked_pixel_at_its_place(
    context: ProcessingContext,
) -> None:
    step = CropStep(CropSettings(aspect="1:1", gravity="top-left"))

    result = await run(step, marked(), context)

    assert (result.width, result.height) == (H, H)
    assert red_pixels(result) == [MARK]


async def test_a_crop_of_the_whole_image_passes_it_through(
    context: ProcessingContext,
) -> None:
    image = marked()

    result = await run(CropStep(CropSettings(aspect="2:1")), image, context)

    assert result.data == image.data


# -- settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "options", "match"),
    [
        (CropSettings, {"aspect": "wide"}, "not an aspect ratio: 'wide'"),
        (CropSettings, {"aspect": "0:1"}, "positive numbers"),
        (CropSettings, {"aspect": "1:1", "width": 5, "height": 5}, "not both"),
        (CropSettings, {"width": 5}, "needs both width and height"),
        (CropSettings, {"left": 3}, "needs both width and height"),
        (
            CropSettings,
            {"width": 5, "height": 5, "gravity": "top"},
            "gravity places an aspect crop",
        ),
        (CropSettings, {"gravity": "middle"}, "gravity"),
        (CropSettings, {"width": 0, "height": 5}, "width"),
        (RotateSettings, {"angle": 400}, "angle"),
        (RotateSettings, {"angle": float("inf")}, "angle"),
        (RotateSettings, {"fill": "blurple"}, "not a colour: 'blurple'"),
        (RotateSettings, {"expand": "sideways"}, "expand"),
        (FlipSettings, {"direction": "diagonal"}, "horizontal.*vertical.*both"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(
    cls: type[pydantic.BaseModel], options: dict[str, Any], match: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        cls(**options)


# -- through MCP: transform_image ------------------------------------------------


async def test_transform_image_runs_the_documented_crop_rotate_flip_chain(
    tmp_path: Path,
) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "postprocessing.md").read_text()
    (example,) = [
        block
        for block in re.findall(r"```toml\n(.*?)```", docs, re.S)
        if 'type = "crop"' in block
    ]
    settings = settings_from_dict(
        {
            "storage": {"backend": "file", "file": {"directory": str(tmp_path)}},
            "generation": {"postprocess": []},
            **tomllib.loads(example),
        }
    )
    async with mcp.Client(create_server(settings)) as client:
        made = await client.call_tool(
            "generate_image",
            {"prompt": "a red fox", "width": 256, "height": 256, "seed": 3},
        )
        assert made.structured_content is not None
        (original,) = made.structured_content["images"]
        result = await client.call_tool(
            "transform_image",
            {
                "image_id": original["id"],
                # As docs/postprocessing.md says: "rotate" and "flip" are the
                # types' own names, with default options (90 degrees, horizontal).
                "postprocess": ["banner", "rotate", "flip"],
                "output_format": "png",
            },
        )
        assert not result.is_error, result.content
        assert result.structured_content is not None
        (derived,) = result.structured_content["images"]
        read = await client.read_resource(f"image://{derived['id']}")
        (contents,) = read.contents
        assert isinstance(contents, BlobResourceContents)
        source = await client.read_resource(f"image://{original['id']}")
        (source_contents,) = source.contents
        assert isinstance(source_contents, BlobResourceContents)

    def pixels(blob: str) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(blob))).convert("RGB"))

    before, after = pixels(source_contents.blob), pixels(contents.blob)
    # Top half (256x128), turned clockwise (128x256), mirrored left-right: that
    # is the transpose of the top half.
    assert after.shape == (256, 128, 3)
    assert np.array_equal(after, before[:128].transpose(1, 0, 2))
