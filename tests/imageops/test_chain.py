"""Steps in chains, run by the real ImageService (placeholder backend, file storage)."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mcp_imagegen import (
    ConfigurationError,
    GenerationRequest,
    ImageRecord,
    ValidationError,
)
from mcp_imagegen._app import build_service
from mcp_imagegen._config import settings_from_dict
from mcp_imagegen._plugins import load_plugins
from mcp_imagegen._service import ImageService

pytestmark = pytest.mark.anyio

STEP_TYPES = {"resize", "convert", "watermark", "metadata", "strip_metadata"}
#: The production chain documented in docs/postprocessing.md.
PRODUCTION_STEPS: dict[str, dict[str, Any]] = {
    "resize": {"max_side": 1024},
    "web": {"type": "convert", "format": "webp", "quality": 85},
    "small": {"type": "resize", "max_side": 128},
    "brand": {"type": "watermark", "text": "example.com"},
}


def config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "storage": {"backend": "file", "file": {"directory": str(tmp_path / "images")}},
        "postprocess": PRODUCTION_STEPS,
    }
    data.update(sections)
    return data


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[ImageService]:
    settings = settings_from_dict(
        config(tmp_path, generation={"postprocess": ["resize", "web", "metadata"]})
    )
    async with build_service(settings) as running:
        yield running


async def generate(
    service: ImageService, postprocess: list[str] | None = None, **request: Any
) -> tuple[ImageRecord, Image.Image]:
    fields: dict[str, Any] = {
        "prompt": "a red fox in snow",
        "width": 256,
        "height": 192,
    }
    fields.update(request)
    output_format = fields.pop("output_format", None)
    [generated] = await service.generate(
        GenerationRequest(seed=99, steps=4, **fields),
        postprocess=postprocess,
        output_format=output_format,
    )
    record = generated.record
    stored = await service.storage.load(record.id)
    decoded = Image.open(io.BytesIO(stored.data))
    decoded.load()
    return record, decoded


def user_comment(decoded: Image.Image) -> str:
    return str(decoded.getexif().get_ifd(0x8769)[0x9286][8:].decode("utf-16-be"))


def test_entry_point_registers_every_step_type() -> None:
    types = load_plugins().component_types("postprocessor")

    assert STEP_TYPES <= set(types)


def test_plugin_module_imports_without_pillow() -> None:
    code = "import sys, mcp_imagegen_imageops.plugin; print('PIL' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.strip() == "False"


async def test_production_chain_gives_a_small_webp_with_its_recipe(
    service: ImageService,
) -> None:
    record, decoded = await generate(service, width=1536, height=1024)

    assert decoded.format == "WEBP" and decoded.size == (1024, 683)
    assert (record.mime_type, record.width, record.height) == ("image/webp", 1024, 683)
    comment = user_comment(decoded)
    assert comment.startswith("a red fox in snow\nSteps: 4, ")
    assert "Seed: 99, Size: 1536x1024, Model: placeholder-v1" in comment


async def test_request_output_format_wins_over_the_convert_step(
    service: ImageService,
) -> None:
    record, decoded = await generate(service, output_format="jpeg")

    assert decoded.format == "JPEG" and record.mime_type == "image/jpeg"
    assert decoded.getexif().get_ifd(0x8769)[0x9286]  # metadata still written


async def test_request_chain_replaces_the_default_chain(service: ImageService) -> None:
    record, decoded = await generate(service, postprocess=["small"])

    assert decoded.format == "PNG" and decoded.size == (128, 96)
    assert "parameters" not in decoded.info
    assert record.postprocess == ["small"]


async def test_chain_order_is_respected(service: ImageService) -> None:
    _, stripped_last = await generate(
        service, postprocess=["metadata", "strip_metadata"]
    )
    _, stripped_first = await generate(
        service, postprocess=["strip_metadata", "metadata"]
    )

    assert "parameters" not in stripped_last.info
    assert "parameters" in stripped_first.info


async def test_metadata_written_before_a_conversion_survives_it(
    service: ImageService,
) -> None:
    _, decoded = await generate(service, postprocess=["metadata", "small", "web"])

    assert decoded.format == "WEBP" and decoded.size == (128, 96)
    assert user_comment(decoded).startswith("a red fox in snow\n")
    assert b"a red fox in snow" in decoded.info["xmp"]


async def test_type_name_alone_is_a_step_with_default_options(
    service: ImageService,
) -> None:
    _, decoded = await generate(service, postprocess=["watermark", "convert"])

    assert decoded.format == "WEBP"  # convert's default format


async def test_unknown_step_in_a_request_is_a_validation_error(
    service: ImageService,
) -> None:
    with pytest.raises(ValidationError, match="unknown post-processing step 'sharpen'"):
        await generate(service, postprocess=["resize", "sharpen"])


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ({"web": {"type": "convert", "quality": 0}}, r"postprocess\.web\.quality"),
        ({"web": {"type": "convert", "lossless": True, "format": "png"}}, "lossless"),
        ({"big": {"type": "resize", "max_side": 512, "width": 10}}, "either max_side"),
        (
            {"brand": {"type": "watermark", "opacity": 2}},
            r"postprocess\.brand\.opacity",
        ),
        ({"web": {"type": "convert", "qualty": 80}}, r"postprocess\.web\.qualty"),
        ({"blur": {"type": "gaussian"}}, "unknown postprocessor type 'gaussian'"),
    ],
)
def test_invalid_step_configuration_fails_at_start_up(
    tmp_path: Path, steps: dict[str, Any], message: str
) -> None:
    settings = settings_from_dict(config(tmp_path, postprocess=steps))

    with pytest.raises(ConfigurationError, match=message):
        build_service(settings)


def test_unknown_step_in_the_default_chain_fails_at_start_up(tmp_path: Path) -> None:
    settings = settings_from_dict(
        config(tmp_path, generation={"postprocess": ["resize", "thumbnail"]})
    )

    with pytest.raises(ConfigurationError, match="'thumbnail'"):
        build_service(settings)


async def test_production_configuration_in_the_docs_works(tmp_path: Path) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "postprocessing.md").read_text()
    example = tomllib.loads(re.findall(r"```toml\n(.*?)```", docs, re.S)[0])
    settings = settings_from_dict(config(tmp_path, **example))

    async with build_service(settings) as service:
        record, decoded = await generate(service, width=1536, height=1024)
        _, branded = await generate(
            service, postprocess=["resize", "brand", "web", "metadata"]
        )

    assert (decoded.format, decoded.size) == ("WEBP", (1024, 683))
    assert record.postprocess == ["resize", "web", "metadata"]
    assert branded.format == "WEBP" and "xmp" in branded.info
