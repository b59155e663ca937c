"""Settings validation, capabilities and the request bodies sent to predictors."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest
from PIL import Image

from mcp_imagegen import (
    BackendUnavailableError,
    ConfigurationError,
    GenerationRequest,
    ValidationError,
    ignore_progress,
)
from mcp_imagegen._plugins import load_plugins
from mcp_imagegen_kserve.backend import KServeBackend
from mcp_imagegen_kserve.retries import backoff_delay
from mcp_imagegen_kserve.settings import KServeSettings

pytestmark = pytest.mark.anyio

URL = "http://kserve.test"


def settings(**options: Any) -> KServeSettings:
    return KServeSettings(**{"url": URL, "model": "sd", **options})


# -- settings ----------------------------------------------------------------------


def test_the_plugin_registers_the_kserve_backend_type() -> None:
    manager = load_plugins()

    assert manager.component_type("backend", "kserve", key="test") is KServeBackend


def test_defaults_fit_the_common_predictor_contract() -> None:
    s = settings()

    assert s.protocol == "v1"
    assert (s.connect_timeout, s.timeout) == (10.0, 300.0)
    assert s.prompt_input == "prompt" and s.prompt_shape == [1]
    assert s.wire_names()["steps"] == "num_inference_steps"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://models.example.com", "http"),
        ("https://user:pass@models.example.com", "credentials"),
        ("https://models.example.com?token=abc", "query"),
        ("models.example.com", "http"),
    ],
)
def test_rejects_unusable_urls(url: str, problem: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=problem):
        settings(url=url)


def test_url_keeps_its_path_prefix_without_trailing_slash() -> None:
    backend = KServeBackend(
        settings(url="https://gw.example.com/serving/ns/sdxl/"), instance_name="x"
    )

    assert (
        backend.infer_url
        == "https://gw.example.com/serving/ns/sdxl/v1/models/sd:predict"
    )


def test_model_name_is_escaped_in_the_path() -> None:
    backend = KServeBackend(settings(model="sd/xl?", protocol="v2"), instance_name="x")

    assert backend.infer_url == f"{URL}/v2/models/sd%2Fxl%3F/infer"


@pytest.mark.parametrize("shape", [[2], [1, 2], [], [0]])
def test_prompt_shape_must_hold_exactly_one_prompt(shape: list[int]) -> None:
    with pytest.raises(pydantic.ValidationError, match="one prompt"):
        settings(prompt_shape=shape)


def test_unknown_field_names_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="unknown field"):
        settings(field_names={"sampler": "scheduler"})


def test_unknown_settings_are_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        settings(read_timeout=5)


def test_token_is_hidden_in_the_settings_repr() -> None:
    s = settings(token="sekret")

    assert "sekret" not in repr(s)


def test_capabilities_reflect_the_settings() -> None:
    backend = KServeBackend(
        settings(
            max_images=1,
            max_side=1024,
            side_multiple=64,
            supports_negative_prompt=False,
            default_steps=30,
        ),
        instance_name="x",
    )

    caps = backend.capabilities
    assert (caps.max_images, caps.max_side, caps.side_multiple) == (1, 1024, 64)
    assert not caps.supports_negative_prompt
    assert caps.default_steps == 30
    assert caps.models == ["sd"]


async def test_a_missing_ca_bundle_fails_start_with_the_key(tmp_path: Path) -> None:
    backend = KServeBackend(
        settings(ca_bundle=tmp_path / "nope.pem"), instance_name="sdxl"
    )

    with pytest.raises(ConfigurationError, match=r"backends\.sdxl\.ca_bundle"):
        await backend.start()


async def test_generate_before_start_is_unavailable() -> None:
    backend = KServeBackend(settings(), instance_name="sdxl")

    with pytest.raises(BackendUnavailableError, match="not started"):
        await backend.generate(GenerationRequest(prompt="x", seed=1), ignore_progress)


async def test_aclose_is_idempotent() -> None:
    backend = KServeBackend(settings(), instance_name="sdxl")
    await backend.start()

    await backend.aclose()
    await backend.aclose()


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    s = settings(retry_backoff=1.0, retry_backoff_max=10.0)

    waits = [backoff_delay(attempt, s) for attempt in range(1, 8)]

    for attempt, wait in enumerate(waits, start=1):
        full = min(10.0, 2.0 ** (attempt - 1))
        assert full / 2 <= wait <= full


def test_backoff_honours_retry_after_up_to_the_cap() -> None:
    s = settings(retry_backoff=0.1, retry_backoff_max=5.0)

    assert backoff_delay(1, s, retry_after=3.0) == 3.0
    assert backoff_delay(1, s, retry_after=60.0) == 5.0


# -- request bodies ------------------------------------------------------------------


def png_reply() -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG")
    return {"image_b64": base64.b64encode(buffer.getvalue()).decode()}


class Recorder:
    """Answers every request with one valid image per V1 instance; keeps bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.urls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.urls.append(str(request.url))
        if "instances" in body:
            return httpx.Response(
                200, json={"predictions": [png_reply() for _ in body["instances"]]}
            )
        b64 = png_reply()["image_b64"]
        return httpx.Response(
            200,
            json={
                "outputs": [
                    {"name": "image", "datatype": "BYTES", "shape": [1], "data": [b64]}
                ]
            },
        )


async def bodies_for(
    request: GenerationRequest, **options: Any
) -> list[dict[str, Any]]:
    recorder = Recorder()
    backend = KServeBackend(
        settings(**options), instance_name="t", transport=httpx.MockTransport(recorder)
    )
    async with backend:
        await backend.generate(request, ignore_progress)
    return sorted(recorder.bodies, key=json.dumps)


FULL = GenerationRequest(
    prompt="a cat",
    negative_prompt="blurry",
    width=768,
    height=512,
    seed=41,
    steps=25,
    guidance_scale=7.5,
)


async def test_v1_body_follows_the_diffusers_predictor_contract() -> None:
    [body] = await bodies_for(FULL)

    assert body == {
        "instances": [
            {
                "prompt": "a cat",
                "negative_prompt": "blurry",
                "width": 768,
                "height": 512,
                "seed": 41,
                "num_inference_steps": 25,
                "guidance_scale": 7.5,
            }
        ]
    }


async def test_v1_sends_one_request_per_image_with_consecutive_seeds() -> None:
    bodies = await bodies_for(FULL.model_copy(update={"num_images": 3}))

    seeds = sorted(b["instances"][0]["seed"] for b in bodies)
    assert seeds == [41, 42, 43]


async def test_v1_batch_instances_sends_all_images_in_one_request() -> None:
    [body] = await bodies_for(
        FULL.model_copy(update={"num_images": 3}), batch_instances=True
    )

    assert [i["seed"] for i in body["instances"]] == [41, 42, 43]


async def test_omitted_fields_are_not_sent() -> None:
    [body] = await bodies_for(GenerationRequest(prompt="a cat", seed=3))

    assert body == {
        "instances": [{"prompt": "a cat", "width": 512, "height": 512, "seed": 3}]
    }


async def test_unsupported_features_are_not_sent() -> None:
    [body] = await bodies_for(
        FULL,
        supports_seed=False,
        supports_steps=False,
        supports_guidance_scale=False,
        supports_negative_prompt=False,
        default_steps=30,  # not sent either: the model takes no steps
    )

    assert set(body["instances"][0]) == {"prompt", "width", "height"}


async def test_field_names_rename_or_drop_fields() -> None:
    [body] = await bodies_for(
        FULL, prompt_input="text", field_names={"steps": "steps", "guidance_scale": ""}
    )

    instance = body["instances"][0]
    assert instance["text"] == "a cat" and "prompt" not in instance
    assert instance["steps"] == 25
    assert "guidance_scale" not in instance and "num_inference_steps" not in instance


async def test_extra_parameters_are_sent_but_request_fields_win() -> None:
    request = FULL.model_copy(update={"parameters": {"scheduler": "ddim", "seed": 1}})

    [body] = await bodies_for(
        request, extra_parameters={"scheduler": "euler", "lora": "x"}
    )

    instance = body["instances"][0]
    assert instance["scheduler"] == "ddim"  # the request beats the configuration
    assert instance["lora"] == "x"
    assert instance["seed"] == 41  # the generation fields beat both


async def test_v2_body_sends_the_prompt_as_bytes_and_fields_as_parameters() -> None:
    [body] = await bodies_for(FULL, protocol="v2")

    assert body["inputs"] == [
        {"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["a cat"]}
    ]
    assert body["parameters"] == {
        "negative_prompt": "blurry",
        "width": 768,
        "height": 512,
        "seed": 41,
        "num_inference_steps": 25,
        "guidance_scale": 7.5,
    }
    assert "outputs" not in body
    assert isinstance(body["id"], str)


async def test_v2_fields_as_inputs_are_typed_tensors_shaped_like_the_prompt() -> None:
    [body] = await bodies_for(
        FULL, protocol="v2", parameters_in="inputs", prompt_shape=[1, 1]
    )

    inputs = {i["name"]: i for i in body["inputs"]}
    assert inputs["prompt"]["shape"] == [1, 1]
    assert inputs["width"] == {
        "name": "width",
        "shape": [1, 1],
        "datatype": "INT32",
        "data": [768],
    }
    assert inputs["seed"]["datatype"] == "INT64"
    assert inputs["guidance_scale"]["datatype"] == "FP32"
    assert inputs["negative_prompt"]["datatype"] == "BYTES"
    assert "parameters" not in body


async def test_v2_binary_data_and_output_name_are_requested() -> None:
    [body] = await bodies_for(
        FULL, protocol="v2", binary_data=True, output_name="image"
    )

    assert body["parameters"]["binary_data_output"] is True
    assert body["outputs"] == [{"name": "image", "parameters": {"binary_data": True}}]


async def test_a_request_for_another_model_is_refused() -> None:
    with pytest.raises(ValidationError, match="serves model 'sd'"):
        await bodies_for(FULL.model_copy(update={"model": "flux"}))


async def test_generated_images_carry_seed_model_and_real_size() -> None:
    recorder = Recorder()
    backend = KServeBackend(
        settings(), instance_name="t", transport=httpx.MockTransport(recorder)
    )
    async with backend:
        images = await backend.generate(
            FULL.model_copy(update={"num_images": 2}), ignore_progress
        )

    assert [i.seed for i in images] == [41, 42]
    assert {(i.model, i.mime_type, i.width, i.height) for i in images} == {
        ("sd", "image/png", 64, 64)
    }
