"""The metadata step: the recipe round-trips through real PNG, JPEG and WebP files."""

from __future__ import annotations

import json
import re
import threading
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pydantic
import pytest
from PIL import Image

from mcp_imagegen import (
    GeneratedImage,
    GenerationRequest,
    ProcessingContext,
    ignore_progress,
    imaging,
)
from mcp_imagegen_imageops.containers import read_metadata
from mcp_imagegen_imageops.metadata import (
    DIGITAL_SOURCE_TYPE,
    XMP_NAMESPACE,
    MetadataSettings,
    MetadataStep,
    StripMetadataSettings,
    StripMetadataStep,
)
from mcp_imagegen_placeholder.backend import PlaceholderBackend, PlaceholderSettings
from tests.imageops.conftest import encode, make_context, photo_pixels, reopen

pytestmark = pytest.mark.anyio

MakeImage = Callable[..., GeneratedImage]
EXPECTED_PARAMETERS = (
    "a lighthouse on a cliff at dusk, watercolor\n"
    "Negative prompt: blurry, text\n"
    "Steps: 30, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model: test-model"
)
# The "key: value" pattern of AUTOMATIC1111's parse_generation_parameters.
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
NS = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
    "mcpimagegen": XMP_NAMESPACE,
}


def metadata_step(**options: object) -> MetadataStep:
    return MetadataStep(MetadataSettings.model_validate(options))


def parse_a1111(text: str) -> dict[str, str]:
    """Read a ``parameters`` text the way AUTOMATIC1111's web UI does."""
    *lines, last = text.strip().split("\n")
    if len(A1111_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in A1111_PARAM.findall(last):
        result[key.strip()] = json.loads(value) if value.startswith('"') else value
    return result


def user_comment(decoded: Image.Image) -> str:
    """EXIF UserComment, decoded as piexif.helper.UserComment.load does."""
    raw = decoded.getexif().get_ifd(0x8769)[0x9286]
    assert raw[:8] == b"UNICODE\x00"
    return str(raw[8:].decode("utf-16-be"))


def xmp_tree(image: GeneratedImage) -> ET.Element:
    xmp = read_metadata(image.data, image.mime_type).xmp
    assert xmp is not None
    description = ET.fromstring(xmp).find(".//rdf:Description", NS)
    assert description is not None
    return description


async def test_png_parameters_chunk_uses_the_automatic1111_layout(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    result = await metadata_step().process(make_image(), context)

    parameters = reopen(result).info["parameters"]
    assert parameters == EXPECTED_PARAMETERS
    assert parse_a1111(parameters) == {
        "Prompt": "a lighthouse on a cliff at dusk, watercolor",
        "Negative prompt": "blurry, text",
        "Steps": "30",
        "CFG scale": "7.5",
        "Seed": "1234",
        "Size": "512x512",
        "Model": "test-model",
    }


async def test_png_json_chunk_holds_the_full_recipe(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = make_image().model_copy(update={"parameters": {"scheduler": "DPM++ 2M"}})

    result = await metadata_step().process(source, context)

    recipe = json.loads(reopen(result).info["mcp-imagegen"])
    assert recipe == {
        "generator": recipe["generator"],
        "prompt": "a lighthouse on a cliff at dusk, watercolor",
        "negative_prompt": "blurry, text",
        "seed": 1234,
        "steps": 30,
        "guidance_scale": 7.5,
        "sampler": "DPM++ 2M",
        "width": 512,
        "height": 512,
        "backend": "sdxl",
        "model": "test-model",
        "backend_parameters": {"scheduler": "DPM++ 2M"},
    }
    assert recipe["generator"].startswith("mcp-imagegen ")


async def test_backend_sampler_and_quoted_values_appear_in_parameters(
    make_image: MakeImage,
) -> None:
    source = make_image().model_copy(
        update={"parameters": {"sampler": "Euler a"}, "model": None}
    )
    context = make_context(model="sd-xl, refiner: v2").model_copy(
        update={"model": None}
    )

    result = await metadata_step().process(source, context)

    parsed = parse_a1111(reopen(result).info["parameters"])
    assert parsed["Sampler"] == "Euler a"
    assert parsed["Model"] == "sd-xl, refiner: v2"


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("JPEG", {"quality": 90}),
        ("WEBP", {"quality": 80}),
        ("WEBP", {"lossless": True}),
    ],
)
async def test_pixels_are_untouched(
    context: ProcessingContext, fmt: str, options: dict[str, Any]
) -> None:
    source = encode(
        photo_pixels(96, 64, mode="RGB" if fmt == "JPEG" else "RGBA"), fmt, **options
    )

    result = await metadata_step().process(source, context)

    assert np.array_equal(np.asarray(reopen(source)), np.asarray(reopen(result)))
    assert len(result.data) > len(source.data)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
async def test_exif_carries_description_software_and_user_comment(
    make_image: MakeImage, context: ProcessingContext, fmt: str
) -> None:
    result = await metadata_step().process(make_image(fmt=fmt), context)

    decoded = reopen(result)
    exif = decoded.getexif()
    assert exif[0x010E] == "a lighthouse on a cliff at dusk, watercolor"
    assert exif[0x0131].startswith("mcp-imagegen ")
    assert user_comment(decoded) == EXPECTED_PARAMETERS


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
async def test_xmp_describes_the_image_as_ai_generated_with_its_recipe(
    make_image: MakeImage, context: ProcessingContext, fmt: str
) -> None:
    result = await metadata_step().process(make_image(fmt=fmt), context)

    reopen(result)
    description = xmp_tree(result)
    digital_source = description.get(f"{{{NS['Iptc4xmpExt']}}}DigitalSourceType")
    assert digital_source == DIGITAL_SOURCE_TYPE
    assert description.get(f"{{{NS['xmp']}}}CreatorTool", "").startswith("mcp-imagegen")
    title = description.find("dc:description/rdf:Alt/rdf:li", NS)
    assert title is not None and title.text == context.request.prompt
    parameters = description.find("mcpimagegen:parameters", NS)
    assert parameters is not None and parameters.text == EXPECTED_PARAMETERS
    recipe = description.find("mcpimagegen:recipe", NS)
    assert recipe is not None and json.loads(recipe.text or "")["seed"] == 1234


async def test_simple_lossless_webp_with_alpha_keeps_alpha_when_extended(
    context: ProcessingContext,
) -> None:
    source = encode(photo_pixels(64, 64, mode="RGBA"), "WEBP", lossless=True)
    assert source.data[12:16] == b"VP8L"  # a simple file: no room for metadata

    result = await metadata_step().process(source, context)

    assert result.data[12:16] == b"VP8X"
    decoded = reopen(result)
    assert decoded.mode == "RGBA"
    assert np.asarray(decoded.getchannel("A"))[:, :28].max() == 0


async def test_non_ascii_prompt_round_trips_everywhere(make_image: MakeImage) -> None:
    prompt = 'über Café — 東京の夜景 <&> "quotes"'
    context = make_context(prompt=prompt, negative_prompt=None)

    png = await metadata_step().process(make_image(), context)
    jpeg = await metadata_step().process(make_image(fmt="JPEG"), context)

    assert reopen(png).info["parameters"].split("\n")[0] == prompt
    assert json.loads(reopen(png).info["mcp-imagegen"])["prompt"] == prompt
    assert user_comment(reopen(jpeg)).split("\n")[0] == prompt
    title = xmp_tree(jpeg).find("dc:description/rdf:Alt/rdf:li", NS)
    assert title is not None and title.text == prompt


async def test_control_characters_in_prompt_keep_the_xmp_well_formed(
    make_image: MakeImage,
) -> None:
    context = make_context(prompt="bell\x07 and null\x00 and tab\t")

    result = await metadata_step().process(make_image(fmt="JPEG"), context)

    title = xmp_tree(result).find("dc:description/rdf:Alt/rdf:li", NS)
    assert title is not None and title.text == "bell and null and tab\t"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
async def test_include_prompt_off_leaves_the_prompt_out(
    make_image: MakeImage, context: ProcessingContext, fmt: str
) -> None:
    result = await metadata_step(include_prompt=False).process(
        make_image(fmt=fmt), context
    )

    for phrase in ("lighthouse", "blurry"):
        assert phrase.encode("utf-8") not in result.data
        assert phrase.encode("utf-16-be") not in result.data
    assert "Seed: 1234" in user_comment(reopen(result))


async def test_running_twice_replaces_rather_than_duplicates(
    make_image: MakeImage,
) -> None:
    first = await metadata_step().process(make_image(fmt="JPEG"), make_context(seed=1))

    second = await metadata_step().process(first, make_context(seed=2))

    assert second.data.count(b"Exif\x00\x00") == 1
    assert second.data.count(b"http://ns.adobe.com/xap/1.0/\x00") == 1
    assert "Seed: 2" in user_comment(reopen(second))


async def test_running_twice_on_png_keeps_one_parameters_chunk(
    make_image: MakeImage,
) -> None:
    first = await metadata_step().process(make_image(), make_context(seed=1))

    second = await metadata_step().process(first, make_context(seed=2))

    assert second.data.count(b"parameters\x00") == 1
    assert "Seed: 2" in reopen(second).info["parameters"]


async def test_blocks_can_be_turned_off(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    step = metadata_step(png_text=False, exif=False, xmp=True)

    result = await step.process(make_image(), context)

    info = reopen(result).info
    assert "parameters" not in info and "exif" not in info
    assert "xmp" in info


async def test_transformed_image_recipe_names_its_source(make_image: MakeImage) -> None:
    context = make_context().model_copy(update={"source_image_id": "abc123"})

    result = await metadata_step().process(make_image(), context)

    assert (
        json.loads(reopen(result).info["mcp-imagegen"])["source_image_id"] == "abc123"
    )


async def test_gif_passes_through_unchanged(context: ProcessingContext) -> None:
    source = encode(photo_pixels(32, 32).quantize(16), "GIF")

    result = await metadata_step().process(source, context)

    assert result.data == source.data


def test_unknown_option_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError):
        MetadataSettings.model_validate({"iptc": True})


async def test_same_image_and_recipe_give_the_same_bytes(
    make_image: MakeImage, context: ProcessingContext
) -> None:
    source = make_image(fmt="WEBP")

    first = await metadata_step().process(source, context)
    second = await metadata_step().process(source, context)

    assert first.data == second.data  # no timestamps: reproducible files


# -- bytes this process encoded are not inflated again --------------------------------


@pytest.fixture
def inflations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per zlib inflater the image checks create (the costly part)."""
    made: list[int] = []
    real = zlib.decompressobj

    def decompressobj(*args: Any, **kwargs: Any) -> Any:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(imaging.zlib, "decompressobj", decompressobj)
    return made


async def test_placeholder_images_are_marked_as_encoded_here() -> None:
    request = GenerationRequest(prompt="a lighthouse", width=64, height=64, seed=1)

    images = await PlaceholderBackend(PlaceholderSettings()).generate(
        request, ignore_progress
    )

    assert imaging.is_encoded_here(images[0])
    # The fact is kept beside the bytes: no bytes subclass, which costs a copy.
    assert type(images[0].data) is bytes


def test_the_encoded_here_mark_holds_only_for_the_same_bytes() -> None:
    image = imaging.mark_encoded(encode(photo_pixels(16, 16)))
    other = encode(photo_pixels(17, 17))

    assert imaging.is_encoded_here(image)
    assert imaging.is_encoded_here(image.model_copy(update={"seed": 3}))
    assert imaging.is_encoded_here(image.model_copy(deep=True))
    changed = image.model_copy(update={"data": other.data})
    assert not imaging.is_encoded_here(changed)
    assert changed._encoded_data is None  # nor does it keep the old bytes alive
    # Equal bytes from elsewhere are not the bytes the encoder wrote.
    assert not imaging.is_encoded_here(
        image.model_copy(update={"data": bytes(bytearray(image.data))})
    )
    assert not imaging.is_encoded_here(other)


async def test_metadata_step_does_not_inflate_bytes_encoded_in_this_process(
    inflations: list[int], context: ProcessingContext
) -> None:
    plain = encode(photo_pixels(64, 64))
    encoded_here = imaging.mark_encoded(plain.model_copy())
    wrapped = plain.model_copy(update={"data": imaging.EncodedImage(plain.data)})
    step = MetadataStep(MetadataSettings())

    trusted = await step.process(encoded_here, context)
    assert await step.process(wrapped, context) == trusted  # the older way, too
    assert inflations == []
    checked = await step.process(plain, context)
    assert inflations == [1]  # bytes from elsewhere are still checked in full
    assert trusted.data == checked.data
    assert not imaging.is_encoded_here(trusted)  # new bytes: no longer vouched for


# -- small images are done on the event loop; large ones in a worker thread -------


class _ThreadRecordingStep(MetadataStep):
    """The real step, noting the thread each ``apply`` runs in."""

    threads: list[int]

    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        self.threads.append(threading.get_ident())
        return super().apply(image, context)


@pytest.mark.parametrize(
    ("size", "encoded_here", "on_loop"),
    [
        (64, False, True),  # a small PNG: verifying it inflates 12 KB at most
        (256, False, True),
        (257, False, False),  # more pixels to inflate: a worker thread
        (300, True, True),  # encoded here (199 KB): only the header is read
        (512, True, False),  # encoded here, but more than INLINE_MAX_BYTES
    ],
)
async def test_metadata_step_runs_small_images_on_the_event_loop(
    context: ProcessingContext, size: int, encoded_here: bool, on_loop: bool
) -> None:
    image = encode(photo_pixels(size, size))
    if encoded_here:
        image = imaging.mark_encoded(image)
    step = _ThreadRecordingStep(MetadataSettings())
    step.threads = []

    result = await step.process(image, context)

    assert (step.threads == [threading.get_ident()]) is on_loop
    # Same bytes either way: the worker thread is only where, not what.
    assert result.data == MetadataStep(MetadataSettings()).apply(image, context).data


async def test_strip_metadata_runs_small_images_on_the_event_loop(
    context: ProcessingContext,
) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    class Recording(StripMetadataStep):
        def apply(
            self, image: GeneratedImage, context: ProcessingContext
        ) -> GeneratedImage:
            seen.append(threading.get_ident())
            return super().apply(image, context)

    step = Recording(StripMetadataSettings())
    await step.process(encode(photo_pixels(64, 64)), context)
    await step.process(encode(photo_pixels(600, 600)), context)

    assert seen[0] == loop_thread
    assert seen[1] != loop_thread
