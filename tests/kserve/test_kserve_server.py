"""KServeBackend against a real KServe model server: every contract, every fault.

The server is ``tests/kserve/predictor.py`` (one ``kserve.ModelServer``, started
once per session by the ``kserve_server`` fixture).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from mcp_imagegen import (
    BackendError,
    BackendNotReadyError,
    BackendRejectedError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadBackendResponseError,
    GenerationRequest,
    ignore_progress,
)
from tests.kserve.rendering import corner_color, received_by_predictor, seed_color
from tests.kserve.support import (
    ROUTE_PREFIX,
    TEST_TOKEN,
    KServeServer,
    ProgressLog,
)

pytestmark = [pytest.mark.anyio, pytest.mark.kserve]

Factory = Callable[..., Any]

#: (model, settings) per predictor contract; ids name the contract.
CONTRACTS: dict[str, tuple[str, dict[str, Any]]] = {
    "v1-diffusers": ("sd-v1", {}),
    "v1-image_b64": ("sd-v1-flat", {}),
    "v1-raw-body": ("sd-v1-raw", {}),
    "v1-batch-instances": ("sd-v1-batch", {"batch_instances": True}),
    "v2-bytes-json": ("sd-v2", {"protocol": "v2"}),
    "v2-bytes-binary": ("sd-v2", {"protocol": "v2", "binary_data": True}),
    "v2-fields-as-inputs": ("sd-v2", {"protocol": "v2", "parameters_in": "inputs"}),
    "v2-several-outputs": ("sd-v2-multi", {"protocol": "v2"}),
    "v2-several-outputs-binary": (
        "sd-v2-multi",
        {"protocol": "v2", "binary_data": True},
    ),
    "v2-output-name": (
        "sd-v2-multi",
        {"protocol": "v2", "binary_data": True, "output_name": "image"},
    ),
    "triton-uint8-json": ("triton-sd", {"protocol": "v2", "prompt_shape": [1, 1]}),
    "triton-uint8-binary": (
        "triton-sd",
        {"protocol": "v2", "prompt_shape": [1, 1], "binary_data": True},
    ),
    "triton-fp32-chw-binary": (
        "triton-fp32",
        {"protocol": "v2", "prompt_shape": [1, 1], "binary_data": True},
    ),
}
#: Contracts whose images are PNGs made by the predictor (carrying what it got).
PNG_CONTRACTS = [k for k in CONTRACTS if not k.startswith("triton")]


def request(**fields: Any) -> GenerationRequest:
    base: dict[str, Any] = {"prompt": "a lighthouse", "width": 96, "height": 64}
    return GenerationRequest(**{**base, "seed": 11, **fields})


def unique_prompt() -> str:
    return f"a lighthouse {uuid.uuid4().hex[:8]}"


# -- contracts ----------------------------------------------------------------


@pytest.mark.parametrize(("model", "options"), CONTRACTS.values(), ids=CONTRACTS.keys())
async def test_each_contract_returns_real_images_with_their_own_seeds(
    backend_factory: Factory, model: str, options: dict[str, Any]
) -> None:
    async with backend_factory(model, **options) as backend:
        images = await backend.generate(request(num_images=2), ignore_progress)

    assert [image.seed for image in images] == [11, 12]
    for image in images:
        assert (image.mime_type, image.width, image.height) == ("image/png", 96, 64)
        assert image.model == model
        # The predictor drew the seed's colour: the seed really reached it.
        assert corner_color(image.data) == seed_color(image.seed or 0)


@pytest.mark.parametrize("contract", PNG_CONTRACTS)
async def test_the_predictor_receives_every_generation_field(
    backend_factory: Factory, contract: str
) -> None:
    model, options = CONTRACTS[contract]
    async with backend_factory(model, **options) as backend:
        [image] = await backend.generate(
            request(negative_prompt="fog", steps=20, guidance_scale=6.5),
            ignore_progress,
        )

    received = received_by_predictor(image.data)
    assert received["prompt"] == "a lighthouse"
    assert received["negative_prompt"] == "fog"
    assert (received["width"], received["height"], received["seed"]) == (96, 64, 11)
    assert received["num_inference_steps"] == 20
    assert received["guidance_scale"] == pytest.approx(6.5)


@pytest.mark.parametrize("contract", PNG_CONTRACTS)
async def test_default_steps_reach_the_predictor_when_the_request_gives_none(
    backend_factory: Factory, contract: str
) -> None:
    # Clients are shown default_steps; without it on the wire the predictor would
    # use its own default (50 for diffusers) and the shown value would be a lie.
    model, options = CONTRACTS[contract]
    async with backend_factory(model, default_steps=17, **options) as backend:
        [defaulted] = await backend.generate(request(), ignore_progress)
        [explicit] = await backend.generate(request(steps=20), ignore_progress)

    assert received_by_predictor(defaulted.data)["num_inference_steps"] == 17
    assert received_by_predictor(explicit.data)["num_inference_steps"] == 20


async def test_batch_instances_against_a_first_instance_predictor_explains_itself(
    backend_factory: Factory,
) -> None:
    async with backend_factory("sd-v1", batch_instances=True) as backend:
        with pytest.raises(BadBackendResponseError, match="batch_instances = false"):
            await backend.generate(request(num_images=2), ignore_progress)


async def test_triton_model_rejects_a_flat_prompt_shape_with_its_message(
    backend_factory: Factory,
) -> None:
    async with backend_factory("triton-sd", protocol="v2") as backend:
        with pytest.raises(BackendRejectedError, match=r"400.*Expected \[-1,1\]"):
            await backend.generate(request(), ignore_progress)


# -- deployment shapes --------------------------------------------------------


async def test_bearer_token_and_host_header_reach_the_server(
    backend_factory: Factory,
) -> None:
    async with backend_factory(
        "secure", token=TEST_TOKEN, host_header="sd.test-ns.example.com"
    ) as backend:
        [image] = await backend.generate(request(), ignore_progress)

    received = received_by_predictor(image.data)
    assert received["authorization"] == f"Bearer {TEST_TOKEN}"
    assert received["host"] == "sd.test-ns.example.com"


async def test_a_missing_token_is_rejected_with_a_hint_and_without_retries(
    backend_factory: Factory,
) -> None:
    async with backend_factory("secure", instance_name="sdxl") as backend:
        with pytest.raises(BackendRejectedError) as caught:
            await backend.generate(request(), ignore_progress)

    assert "401" in str(caught.value)
    assert "MCP_IMAGEGEN_BACKENDS__SDXL__TOKEN" in str(caught.value)


async def test_a_url_with_a_path_prefix_is_used_as_the_base(
    backend_factory: Factory, kserve_server: KServeServer
) -> None:
    async with backend_factory(
        "sd-v1", url=kserve_server.url + ROUTE_PREFIX
    ) as backend:
        health = await backend.check_health()
        [image] = await backend.generate(request(), ignore_progress)

    assert health.ok
    assert image.width == 96


async def test_https_to_a_plain_http_server_is_a_tls_error(
    backend_factory: Factory, kserve_server: KServeServer
) -> None:
    https = kserve_server.url.replace("http://", "https://")
    async with backend_factory("sd-v1", url=https, max_retries=3) as backend:
        with pytest.raises(BackendUnavailableError, match="TLS handshake failed"):
            await backend.generate(request(), ignore_progress)


# -- health -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "protocol", "status"),
    [
        ("sd-v1", "v1", "ok"),
        ("sd-v2", "v2", "ok"),
        ("sleeping", "v1", "degraded"),
        ("sleeping", "v2", "degraded"),
        ("no-such-model", "v1", "unavailable"),
        ("no-such-model", "v2", "unavailable"),
    ],
)
async def test_health_reflects_the_model_ready_endpoint(
    backend_factory: Factory, model: str, protocol: str, status: str
) -> None:
    async with backend_factory(model, protocol=protocol) as backend:
        health = await backend.check_health()

    assert health.status == status
    assert model in health.detail


# -- faults -------------------------------------------------------------------


async def test_invalid_input_is_rejected_with_the_predictor_message(
    backend_factory: Factory,
) -> None:
    async with backend_factory("fault-invalid", instance_name="sd") as backend:
        with pytest.raises(BackendRejectedError) as caught:
            await backend.generate(request(), ignore_progress)

    message = str(caught.value)
    assert message.startswith("KServe backend 'sd' (http://127.0.0.1:")
    assert "400 Bad Request: the prompt was refused by the safety checker" in message


async def test_a_cold_start_is_retried_until_the_model_is_ready(
    backend_factory: Factory,
) -> None:
    progress = ProgressLog()
    async with backend_factory("fault-coldstart", max_retries=3) as backend:
        [image] = await backend.generate(request(prompt=unique_prompt()), progress)

    assert image.width == 96
    assert sum("not available yet; retry" in m for m in progress.messages) == 2


async def test_a_cold_start_longer_than_the_retries_is_not_ready(
    backend_factory: Factory,
) -> None:
    async with backend_factory("fault-coldstart", max_retries=1) as backend:
        with pytest.raises(BackendNotReadyError, match=r"503.*not ready"):
            await backend.generate(request(prompt=unique_prompt()), ignore_progress)


async def test_a_model_that_never_gets_ready_is_not_ready(
    backend_factory: Factory,
) -> None:
    async with backend_factory("sleeping", max_retries=2) as backend:
        with pytest.raises(BackendNotReadyError, match="Gave up after 3 attempt"):
            await backend.generate(request(), ignore_progress)


async def test_a_predictor_exception_is_a_backend_error(
    backend_factory: Factory,
) -> None:
    async with backend_factory("fault-500") as backend:
        with pytest.raises(BackendError, match=r"500.*CUDA out of memory"):
            await backend.generate(request(), ignore_progress)


async def test_healthy_requests_after_500s_succeed_on_the_same_pool(
    backend_factory: Factory,
) -> None:
    # The real server's side of the stale keep-alive race: after a 500 the next
    # request may go out on a connection the server is closing. Bounded: 20 rounds.
    async with backend_factory("fault-500-if-asked", max_retries=2) as backend:
        for _ in range(20):
            with pytest.raises(BackendError, match="CUDA out of memory"):
                await backend.generate(
                    request(parameters={"fail": True}), ignore_progress
                )
            [image] = await backend.generate(request(), ignore_progress)
            assert image.width == 96


async def test_a_reply_slower_than_the_timeout_is_a_timeout(
    backend_factory: Factory,
) -> None:
    async with backend_factory("fault-slow", timeout=0.3) as backend:
        with pytest.raises(BackendTimeoutError, match=r"within 0\.3 s.*raise timeout"):
            await backend.generate(request(), ignore_progress)


async def test_the_deadline_bounds_the_whole_call(backend_factory: Factory) -> None:
    async with backend_factory("fault-slow", deadline=0.3) as backend:
        with pytest.raises(BackendTimeoutError, match=r"deadline of 0\.3 s"):
            await backend.generate(request(), ignore_progress)


async def test_a_reply_without_an_image_is_a_bad_response(
    backend_factory: Factory,
) -> None:
    async with backend_factory("fault-noimage") as backend:
        with pytest.raises(BadBackendResponseError, match="holds no image"):
            await backend.generate(request(), ignore_progress)


async def test_a_truncated_image_is_a_bad_response(backend_factory: Factory) -> None:
    async with backend_factory("fault-corrupt") as backend:
        with pytest.raises(BadBackendResponseError, match="not a usable image"):
            await backend.generate(request(), ignore_progress)


# -- progress, cancellation, concurrency --------------------------------------


async def test_heartbeats_are_sent_while_the_model_works(
    backend_factory: Factory,
) -> None:
    progress = ProgressLog()
    async with backend_factory("fault-slow", heartbeat_interval=0.05) as backend:
        await backend.generate(request(parameters={"delay": 0.5}), progress)

    beats = [
        m
        for m in progress.messages
        if m.startswith("waiting for model 'fault-slow' — ")
    ]
    values = [done for done, _, _ in progress.reports]
    assert beats
    assert all(m.endswith(" s") for m in beats)
    assert values == sorted(values) and len(set(values)) == len(values)
    assert progress.reports[-1][:2] == (1, 1.0)


async def test_a_cancelled_call_stops_waiting_and_the_backend_stays_usable(
    backend_factory: Factory,
) -> None:
    async with backend_factory("fault-slow") as backend:
        with anyio.move_on_after(0.3) as scope:
            await backend.generate(request(parameters={"delay": 30}), ignore_progress)
        [image] = await backend.generate(
            request(parameters={"delay": 0}), ignore_progress
        )

    assert scope.cancelled_caught
    assert image.width == 96


async def test_requests_in_flight_never_exceed_max_concurrency(
    backend_factory: Factory,
) -> None:
    async with backend_factory("fault-slow", max_concurrency=2) as backend:
        images = await backend.generate(
            request(num_images=4, prompt=unique_prompt(), parameters={"delay": 0.2}),
            ignore_progress,
        )

    seen = [received_by_predictor(i.data)["in_flight_at_start"] for i in images]
    assert len(seen) == 4
    assert max(seen) <= 2
