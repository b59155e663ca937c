"""The placeholder backend: deterministic, real images without a model."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import anyio
import numpy as np
import pytest
from PIL import Image

from mcp_imagegen import GeneratedImage, GenerationRequest, ignore_progress
from mcp_imagegen.testing import BackendContract
from mcp_imagegen_placeholder.backend import (
    MODEL_NAME,
    PlaceholderBackend,
    PlaceholderSettings,
)

pytestmark = pytest.mark.anyio


class TestPlaceholderBackendContract(BackendContract):
    """The contract every backend passes, run over the placeholder."""

    @pytest.fixture
    async def backend(self) -> AsyncIterator[PlaceholderBackend]:
        async with PlaceholderBackend(PlaceholderSettings()) as backend:
            yield backend


def make_backend(**options: int) -> PlaceholderBackend:
    return PlaceholderBackend(PlaceholderSettings(**options))


async def generate_one(request: GenerationRequest, **options: int) -> GeneratedImage:
    [image] = await make_backend(**options).generate(request, ignore_progress)
    return image


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def request(**fields: object) -> GenerationRequest:
    base: dict[str, object] = {"prompt": "a red fox", "width": 128, "height": 96}
    return GenerationRequest.model_validate({**base, "seed": 7, **fields})


async def test_same_inputs_give_the_same_bytes() -> None:
    first = await generate_one(request(negative_prompt="blur"))
    second = await generate_one(request(negative_prompt="blur"))

    assert first.data == second.data


async def test_another_seed_gives_a_visibly_different_image() -> None:
    first = await generate_one(request(seed=1))
    second = await generate_one(request(seed=2))

    difference = np.abs(pixels(first.data) - pixels(second.data)).mean()
    assert first.data != second.data
    # Mean difference per channel, 0-255: a glance tells the two apart.
    assert difference > 20


@pytest.mark.parametrize(
    "change", [{"prompt": "a blue fox"}, {"negative_prompt": "snow"}]
)
async def test_prompt_and_negative_prompt_change_the_image(
    change: dict[str, str],
) -> None:
    base = await generate_one(request())
    changed = await generate_one(request(**change))

    assert base.data != changed.data


@pytest.mark.parametrize(("width", "height"), [(64, 64), (512, 256), (200, 1016)])
async def test_image_has_the_requested_size(width: int, height: int) -> None:
    image = await generate_one(request(width=width, height=height))

    decoded = Image.open(io.BytesIO(image.data))
    assert decoded.format == "PNG"
    assert decoded.size == (width, height)
    assert (image.width, image.height) == (width, height)
    assert image.mime_type == "image/png"


async def test_each_image_of_a_request_uses_its_own_seed() -> None:
    images = await make_backend().generate(
        request(num_images=3, seed=40), ignore_progress
    )

    assert [i.seed for i in images] == [40, 41, 42]
    assert {i.model for i in images} == {MODEL_NAME}
    assert len({i.data for i in images}) == 3


async def test_image_n_of_a_request_equals_a_single_image_with_its_seed() -> None:
    images = await make_backend().generate(
        request(num_images=2, seed=40), ignore_progress
    )
    single = await generate_one(request(seed=41))

    assert images[1].data == single.data


async def test_progress_is_reported_once_per_step_of_every_image() -> None:
    reports: list[tuple[float, float | None]] = []

    async def progress(
        done: float, total: float | None = None, message: str | None = None
    ) -> None:
        reports.append((done, total))

    await make_backend().generate(request(num_images=2, steps=3), progress)

    assert reports == [(n, 6) for n in range(1, 7)]


async def test_default_steps_setting_is_used_when_the_request_gives_none() -> None:
    reports: list[float] = []

    async def progress(
        done: float, total: float | None = None, message: str | None = None
    ) -> None:
        reports.append(done)

    image = await make_backend(default_steps=5).generate(request(), progress)

    assert reports == [1, 2, 3, 4, 5]
    assert image[0].parameters == {"steps": 5}


async def test_delay_ms_sleeps_at_least_that_long_per_step() -> None:
    started = anyio.current_time()

    await make_backend(delay_ms=30).generate(request(steps=3), ignore_progress)

    # A little slack: the event loop may fire timers a clock tick early.
    assert anyio.current_time() - started >= 0.085


async def test_cancelling_during_delay_stops_the_generation() -> None:
    reports: list[float] = []

    async def progress(
        done: float, total: float | None = None, message: str | None = None
    ) -> None:
        reports.append(done)

    # Three steps of a minute each: only cancellation can end this in time.
    backend = make_backend(delay_ms=60_000)
    with anyio.fail_after(30):  # safety net only: cancellation must be prompt
        async with anyio.create_task_group() as group:
            group.start_soon(backend.generate, request(steps=3), progress)
            await anyio.wait_all_tasks_blocked()
            group.cancel_scope.cancel()

    assert reports == []


async def test_capabilities_name_the_model_and_default_steps() -> None:
    capabilities = make_backend(default_steps=6).capabilities

    assert capabilities.models == [MODEL_NAME]
    assert capabilities.default_steps == 6
