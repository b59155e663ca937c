"""The example diffusers predictor, for real: diffusers on CPU in a KServe server.

examples/kserve-predictor/predictor.py serves a tiny random Stable Diffusion
pipeline (tests/diffusers/build_tiny.py). Text-to-image goes through MCP with the
real ``kserve`` backend; image-to-image and inpainting speak the V1 contract
directly (the backend's defaults: ``image``, ``mask_image``, ``strength``). The
weights are random, so the checks are about the contract: real images of the
requested size, the seed honoured, the mask honoured, bad input refused clearly.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from PIL import Image, ImageChops, ImageStat

from mcp_imagegen._app import create_server
from mcp_imagegen._config import settings_from_dict
from tests.diffusers.support import (
    MODEL,
    ROOT,
    STARTUP_TIMEOUT,
    VENV_PYTHON,
    child_env,
)
from tests.kserve.support import KServeServer, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.kserve]

#: Non-square, and the core's smallest side (64) for the MCP path.
WIDTH, HEIGHT = 96, 64
#: Few steps keep each image well under a second on one CPU thread.
STEPS = 4


def png(image: Image.Image) -> str:
    """Base64 PNG text of ``image``."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def source_image() -> Image.Image:
    """A busy input: a gradient with a bright block, so changes show."""
    image = Image.linear_gradient("L").resize((WIDTH, HEIGHT)).convert("RGB")
    image.paste((250, 40, 40), (8, 8, 40, 32))
    return image


def half_mask() -> Image.Image:
    """White (repaint) on the left half, black (keep) on the right half."""
    mask = Image.new("L", (WIDTH, HEIGHT), 0)
    mask.paste(255, (0, 0, WIDTH // 2, HEIGHT))
    return mask


def predict(server: KServeServer, **instance: Any) -> httpx.Response:
    """POST one V1 instance to the tiny model."""
    body = {"instances": [{"prompt": "a lighthouse at night", **instance}]}
    return httpx.post(f"{server.url}/v1/models/{MODEL}:predict", json=body, timeout=120)


def predicted_image(response: httpx.Response) -> Image.Image:
    """The one image of a successful V1 answer, decoded and checked to be a PNG."""
    assert response.status_code == 200, response.text
    [prediction] = response.json()["predictions"]
    assert prediction["image"]["format"] == "PNG"
    data = base64.b64decode(prediction["image"]["b64"], validate=True)
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    image.load()
    return image.convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image, box: tuple[int, ...]) -> float:
    """Mean absolute per-channel difference of ``a`` and ``b`` inside ``box``."""
    difference = ImageChops.difference(a.crop(box), b.crop(box))
    return sum(ImageStat.Stat(difference).mean) / 3


def is_varied(image: Image.Image) -> bool:
    """True unless every pixel has the same colour (a blank stand-in image)."""
    return any(low != high for low, high in image.getextrema())


async def test_generate_image_through_mcp_returns_a_real_png_of_the_requested_size(
    predictor_server: KServeServer, tmp_path: Path
) -> None:
    settings = settings_from_dict(
        {
            "generation": {"backend": "tiny"},
            "backends": {
                "tiny": {"type": "kserve", "url": predictor_server.url, "model": MODEL}
            },
            "storage": {"backend": "file", "file": {"directory": str(tmp_path)}},
        }
    )
    arguments = {
        "prompt": f"a lighthouse {uuid.uuid4().hex[:6]}",
        "width": WIDTH,
        "height": HEIGHT,
        "seed": 7,
        "steps": 2,
    }
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("generate_image", arguments)
        assert not result.is_error, result.content
        [info] = result.structured_content["images"]  # type: ignore[index]
        resource = await client.read_resource(info["uri"])

    [content] = resource.contents
    data = base64.b64decode(content.blob)  # type: ignore[union-attr]
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size) == ("PNG", (WIDTH, HEIGHT))
    assert (info["width"], info["height"], info["seed"]) == (WIDTH, HEIGHT, 7)
    assert (info["backend"], info["model"]) == ("tiny", MODEL)
    assert is_varied(image.convert("RGB"))


def data_uri(image: Image.Image) -> str:
    """``image`` as a PNG data URI, as an MCP client sends it."""
    return f"data:image/png;base64,{png(image)}"


async def test_edit_and_inpaint_through_mcp_return_real_images_of_the_size(
    predictor_server: KServeServer, tmp_path: Path
) -> None:
    # The real kserve backend with its default image contract (image,
    # mask_image, strength) against our own predictor: the contract test.
    settings = settings_from_dict(
        {
            "generation": {"backend": "tiny", "postprocess": []},
            "backends": {
                "tiny": {
                    "type": "kserve",
                    "url": predictor_server.url,
                    "model": MODEL,
                    "image_input": True,
                    "mask": True,
                }
            },
            "storage": {"backend": "file", "file": {"directory": str(tmp_path)}},
        }
    )
    source = source_image()
    common = {"prompt": "the same at night", "seed": 3, "steps": STEPS}
    async with Client(create_server(settings)) as client:
        ingested = await client.call_tool("ingest_image", {"data": data_uri(source)})
        assert not ingested.is_error, ingested.content
        [stored] = ingested.structured_content["images"]  # type: ignore[index]
        results = {
            "edit": await client.call_tool(
                "edit_image", {"image": stored["id"], "strength": 0.9, **common}
            ),
            "inpaint": await client.call_tool(
                "edit_image",
                {
                    "image": stored["uri"],
                    "mask": data_uri(half_mask()),
                    "strength": 1.0,
                    **common,
                },
            ),
        }
        images = {}
        for name, result in results.items():
            assert not result.is_error, (name, result.content)
            [info] = result.structured_content["images"]  # type: ignore[index]
            assert (info["width"], info["height"]) == (WIDTH, HEIGHT), name
            assert info["backend"] == "tiny"
            [content] = (await client.read_resource(info["uri"])).contents
            data = base64.b64decode(content.blob)  # type: ignore[union-attr]
            image = Image.open(io.BytesIO(data))
            assert (image.format, image.size) == ("PNG", (WIDTH, HEIGHT)), name
            images[name] = image.convert("RGB")
            assert is_varied(images[name]), name

    white, black = (0, 0, WIDTH // 2, HEIGHT), (WIDTH // 2, 0, WIDTH, HEIGHT)
    # Image-to-image changed the picture; inpainting repainted the white half
    # and kept the black one (soft bounds: the weights are random).
    assert mean_difference(images["edit"], source, (0, 0, WIDTH, HEIGHT)) > 1
    inpainted = images["inpaint"]
    assert mean_difference(inpainted, source, white) > 10
    assert mean_difference(inpainted, source, black) < 2


def test_image_to_image_returns_the_requested_size_and_honours_the_seed(
    predictor_server: KServeServer,
) -> None:
    source = source_image()
    common = {"image": png(source), "strength": 0.75, "num_inference_steps": STEPS}

    first = predicted_image(predict(predictor_server, seed=1, **common))
    again = predicted_image(predict(predictor_server, seed=1, **common))
    other = predicted_image(predict(predictor_server, seed=2, **common))
    # width/height differing from the input's size: the input is resized first.
    square = predicted_image(
        predict(predictor_server, seed=1, width=32, height=32, **common)
    )

    assert first.size == other.size == (WIDTH, HEIGHT)
    assert square.size == (32, 32)
    assert is_varied(first)
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


def test_inpainting_repaints_white_and_keeps_black_regions(
    predictor_server: KServeServer,
) -> None:
    source, mask = source_image(), half_mask()
    common = {
        "image": png(source),
        "mask_image": png(mask),
        "strength": 1.0,
        "num_inference_steps": STEPS,
        "width": WIDTH,
        "height": HEIGHT,
    }

    first = predicted_image(predict(predictor_server, seed=1, **common))
    other = predicted_image(predict(predictor_server, seed=2, **common))

    white, black = (0, 0, WIDTH // 2, HEIGHT), (WIDTH // 2, 0, WIDTH, HEIGHT)
    assert first.size == other.size == (WIDTH, HEIGHT)
    # Soft on purpose: the repainted half is clearly changed, the kept half
    # clearly closer to the input, whatever the random weights draw.
    assert mean_difference(first, source, white) > 10
    assert mean_difference(first, source, black) < mean_difference(first, source, white)
    assert mean_difference(first, source, black) < 2
    assert mean_difference(first, other, white) > 1


@pytest.mark.parametrize(
    ("instance", "expected"),
    [
        ({"image": "not base64 at all!"}, "'image' is not valid base64"),
        (
            {"image": base64.b64encode(b"plain text, no image").decode()},
            "'image' is not an image",
        ),
        ({"image": 42}, "'image' must be a base64 string"),
        ({"mask_image": png(half_mask())}, "'mask_image' needs an 'image'"),
        (
            {"image": png(source_image()), "mask_image": png(Image.new("L", (32, 32)))},
            "'mask_image' is 32x32 but 'image' is 96x64",
        ),
        ({"image": png(source_image()), "strength": 1.5}, "'strength' must be 0 to 1"),
        ({"image": png(source_image()), "strength": -0.1}, "'strength' must be 0 to 1"),
        (
            {"image": png(source_image()), "strength": 0.1, "num_inference_steps": 4},
            "must reach 1 step",
        ),
        (
            {"image": png(Image.new("RGB", (4096, 4096)))},
            "'image' is 4096x4096: at most",
        ),
        (
            {"image": png(Image.new("RGB", (100, 60)))},
            "multiples of 8, got 100x60 (the input image's size",
        ),
    ],
    ids=[
        "bad-base64",
        "not-an-image",
        "not-a-string",
        "mask-without-image",
        "mask-size",
        "strength-high",
        "strength-negative",
        "no-step-left",
        "too-many-pixels",
        "input-size-not-multiple-of-8",
    ],
)
def test_bad_input_is_a_clear_400_and_the_server_keeps_serving(
    predictor_server: KServeServer, instance: dict[str, Any], expected: str
) -> None:
    refused = predict(predictor_server, **{"num_inference_steps": 2, **instance})
    after = predict(predictor_server, num_inference_steps=2, width=32, height=32)

    assert refused.status_code == 400, refused.text
    assert expected in refused.json()["error"]
    assert predicted_image(after).size == (32, 32)


def test_the_readme_text_to_image_example_runs(predictor_server: KServeServer) -> None:
    readme = (ROOT / "examples" / "kserve-predictor" / "README.md").read_text()
    example = readme.split("Text-to-image:\n\n```json\n", 1)[1].split("```", 1)[0]
    body = json.loads(example)

    response = httpx.post(
        f"{predictor_server.url}/v1/models/{MODEL}:predict", json=body, timeout=120
    )

    assert predicted_image(response).size == (512, 512)


def test_offline_a_hub_model_not_on_disk_stops_the_start_with_a_clear_error(
    tiny_pipeline: Path, tmp_path: Path
) -> None:
    # HF_HUB_OFFLINE=1 (set by child_env) and an empty cache: no download is
    # attempted, and the error says why nothing could be loaded.
    result = subprocess.run(
        [
            str(VENV_PYTHON),
            str(ROOT / "tests" / "diffusers" / "serve_loopback.py"),
            "--model_name",
            "hub",
            "--model_id",
            "stabilityai/sdxl-turbo",
            "--http_port",
            str(free_port()),
            "--enable_grpc",
            "false",
        ],
        cwd=ROOT,
        env={**child_env(), "HF_HOME": str(tmp_path / "hf")},
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )

    assert result.returncode == 1, result.stderr[-2000:]
    assert "cannot load 'stabilityai/sdxl-turbo' with HF_HUB_OFFLINE=1" in result.stderr
    assert not (tmp_path / "hf" / "hub").exists()
