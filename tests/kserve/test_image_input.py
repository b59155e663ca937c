"""Image input (image-to-image, inpainting) through the KServe backend.

Against the real test model server: the predictor echoes the sha256 of the image
and mask bytes it decoded, so each test checks the exact stored bytes arrived.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
from PIL import Image

from mcp_imagegen import GenerationRequest, ValidationError, ignore_progress
from mcp_imagegen_kserve.payloads import build_payload, encode_payload
from mcp_imagegen_kserve.settings import KServeSettings
from tests.kserve.rendering import received_by_predictor

pytestmark = [pytest.mark.anyio, pytest.mark.kserve]

Factory = Callable[..., Any]

EDITING = {"image_input": True, "mask": True}
#: (model, settings) of each wire contract that carries image input.
CONTRACTS: dict[str, tuple[str, dict[str, Any]]] = {
    "v1": ("sd-v1", EDITING),
    "v2-parameters": ("sd-v2", {"protocol": "v2", **EDITING}),
    "v2-inputs": ("sd-v2", {"protocol": "v2", "parameters_in": "inputs", **EDITING}),
    "v2-binary-output": ("sd-v2", {"protocol": "v2", "binary_data": True, **EDITING}),
}


def png(color: tuple[int, int, int], *, box: bool = False) -> bytes:
    """Return a 96x64 PNG; with ``box`` a white rectangle on it (a mask)."""
    image = Image.new("RGB", (96, 64), color)
    if box:
        image.paste((255, 255, 255), (20, 10, 60, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


IMAGE = png((200, 120, 40))
MASK = png((0, 0, 0), box=True)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request(**fields: Any) -> GenerationRequest:
    base: dict[str, Any] = {"prompt": "make it night", "width": 96, "height": 64}
    return GenerationRequest(**{**base, "seed": 5, **fields})


@pytest.mark.parametrize(("model", "options"), CONTRACTS.values(), ids=CONTRACTS.keys())
async def test_the_predictor_receives_exactly_the_image_mask_and_strength(
    backend_factory: Factory, model: str, options: dict[str, Any]
) -> None:
    async with backend_factory(model, **options) as backend:
        [image] = await backend.generate(
            request(image=IMAGE, mask=MASK, strength=0.4), ignore_progress
        )

    received = received_by_predictor(image.data)
    assert received["image_sha256"] == sha256(IMAGE)
    assert received["image_bytes"] == len(IMAGE)
    assert received["mask_image_sha256"] == sha256(MASK)
    assert received["strength"] == pytest.approx(0.4)
    assert received["prompt"] == "make it night"


@pytest.mark.parametrize(("model", "options"), CONTRACTS.values(), ids=CONTRACTS.keys())
async def test_image_to_image_without_a_mask_sends_no_mask(
    backend_factory: Factory, model: str, options: dict[str, Any]
) -> None:
    async with backend_factory(model, **options) as backend:
        [image] = await backend.generate(
            request(image=IMAGE, strength=1.0, num_images=1), ignore_progress
        )

    received = received_by_predictor(image.data)
    assert received["image_sha256"] == sha256(IMAGE)
    assert "mask_image_sha256" not in received
    assert received["strength"] == pytest.approx(1.0)


@pytest.mark.parametrize(("model", "options"), CONTRACTS.values(), ids=CONTRACTS.keys())
async def test_text_to_image_bodies_carry_no_image_fields(
    backend_factory: Factory, model: str, options: dict[str, Any]
) -> None:
    # A stray strength without an input image means nothing and is not sent.
    async with backend_factory(model, **options) as backend:
        [image] = await backend.generate(request(strength=0.5), ignore_progress)

    received = received_by_predictor(image.data)
    assert not {"image_sha256", "mask_image_sha256", "strength"} & set(received)


async def test_each_image_of_an_edit_gets_the_same_input(
    backend_factory: Factory,
) -> None:
    async with backend_factory("sd-v1-batch", batch_instances=True, **EDITING) as b:
        images = await b.generate(
            request(image=IMAGE, strength=0.3, num_images=2), ignore_progress
        )

    assert [received_by_predictor(i.data)["seed"] for i in images] == [5, 6]
    for image in images:
        assert received_by_predictor(image.data)["image_sha256"] == sha256(IMAGE)


async def test_field_names_rename_the_image_fields(backend_factory: Factory) -> None:
    names = {"image": "init_image", "mask": "mask", "strength": "denoise"}
    async with backend_factory("sd-v1", field_names=names, **EDITING) as backend:
        [image] = await backend.generate(
            request(image=IMAGE, mask=MASK, strength=0.25), ignore_progress
        )

    received = received_by_predictor(image.data)
    # sd-v1 echoes keys it does not know verbatim: the renamed base64 text.
    assert "image_sha256" not in received and "strength" not in received
    assert received["denoise"] == pytest.approx(0.25)

    assert base64.b64decode(received["init_image"]) == IMAGE
    assert base64.b64decode(received["mask"]) == MASK


# -- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fields", "match"),
    [
        ({}, {"image": IMAGE}, r"^image: .*image_input = true in \[backends\.test\]"),
        (
            {"image_input": True},
            {"image": IMAGE, "mask": MASK},
            r"^mask: .*mask = true",
        ),
        (EDITING, {"mask": MASK}, r"^mask: a mask needs an input image"),
        (EDITING, {"image": IMAGE, "strength": 1.5}, r"^strength: .*0 and 1.*1\.5"),
        (EDITING, {"image": IMAGE, "strength": -0.1}, r"^strength: .*0 and 1"),
        (EDITING, {"image": IMAGE, "strength": float("nan")}, r"^strength: .*nan"),
    ],
    ids=["no-image-input", "no-mask", "mask-alone", "over-1", "below-0", "nan"],
)
async def test_image_input_the_model_cannot_take_is_refused_clearly(
    backend_factory: Factory,
    options: dict[str, Any],
    fields: dict[str, Any],
    match: str,
) -> None:
    async with backend_factory("sd-v1", **options) as backend:
        with pytest.raises(ValidationError, match=match):
            await backend.generate(request(**fields), ignore_progress)
        # The backend keeps serving.
        [image] = await backend.generate(request(), ignore_progress)
    assert received_by_predictor(image.data)["prompt"] == "make it night"


def test_capabilities_show_image_input_and_mask() -> None:
    from mcp_imagegen_kserve.backend import KServeBackend

    def caps(**options: Any) -> tuple[bool, bool]:
        s = KServeSettings(url="http://kserve.test", model="sd", **options)
        c = KServeBackend(s, instance_name="t").capabilities
        return c.image_input, c.mask

    assert caps() == (False, False)
    assert caps(image_input=True) == (True, False)
    assert caps(image_input=True, mask=True) == (True, True)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"mask": True}, "mask = true needs image_input = true"),
        (
            {"image_input": True, "field_names": {"image": ""}},
            r"field_names\.image = \"\".*default 'image'",
        ),
        (
            {**EDITING, "field_names": {"mask": ""}},
            r"field_names\.mask = \"\".*default 'mask_image'",
        ),
    ],
)
def test_inconsistent_image_settings_are_rejected(
    options: dict[str, Any], match: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        KServeSettings(url="http://kserve.test", model="sd", **options)


# -- the body on the wire --------------------------------------------------------


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_the_spliced_body_is_byte_for_byte_the_plain_json(protocol: str) -> None:
    s = KServeSettings(url="http://k.test", model="m", protocol=protocol, **EDITING)
    edit = request(
        prompt='say "hi" \\ é \n 0123456789abcdef-0',
        image=IMAGE,
        mask=MASK,
        strength=0.4,
    )
    payload = build_payload(s, edit, [0])

    assert (
        encode_payload(payload) == json.dumps(payload, separators=(",", ":")).encode()
    )


def _doc_examples() -> list[dict[str, Any]]:
    docs = (Path(__file__).parents[2] / "docs" / "kserve.md").read_text()
    section = docs.split("## Image input", 1)[1].split("\n## ", 1)[0]
    return [
        json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)
    ]


def test_the_documented_v1_and_v2_bodies_are_what_is_sent() -> None:
    v1_doc, v2_doc = _doc_examples()
    edit = GenerationRequest(
        prompt="a night sky",
        width=512,
        height=512,
        seed=7,
        image=IMAGE,
        mask=MASK,
        strength=0.6,
    )

    v1 = build_payload(
        KServeSettings(url="http://k.test", model="m", **EDITING), edit, [0]
    )
    v2 = build_payload(
        KServeSettings(url="http://k.test", model="m", protocol="v2", **EDITING),
        edit,
        [0],
    )

    (instance,) = v1["instances"]
    (doc_instance,) = v1_doc["instances"]
    assert set(instance) == set(doc_instance)
    assert base64.b64decode(instance["image"]) == IMAGE
    assert base64.b64decode(instance["mask_image"]) == MASK
    assert {k: v for k, v in instance.items() if "image" not in k} == {
        k: v for k, v in doc_instance.items() if "image" not in k
    }
    assert v2["parameters"] == v2_doc["parameters"]
    shapes = [(i["name"], i["shape"], i["datatype"]) for i in v2["inputs"]]
    assert shapes == [(i["name"], i["shape"], i["datatype"]) for i in v2_doc["inputs"]]
    assert base64.b64decode(v2["inputs"][1]["data"][0]) == IMAGE
