"""The service's observer seam: backend requests, stored images, busy rejections.

The observer here is a real implementation of the protocol that records what it
is told; faults come from the boundary (a backend that fails or answers wrong).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

from mcp_imagegen import (
    BackendUnavailableError,
    BadBackendResponseError,
    BusyError,
    GeneratedImage,
    GenerationRequest,
    ProgressReporter,
    hookimpl,
)
from mcp_imagegen._app import build_service
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import PluginManager
from mcp_imagegen._service import NULL_OBSERVER, ImageService, ServiceObserver
from mcp_imagegen_placeholder.backend import PlaceholderBackend

pytestmark = pytest.mark.anyio


@dataclass
class Recorder:
    """Records every observation, in order."""

    backend_requests: list[tuple[str, str]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    busy: int = 0

    def backend_request(self, backend: str, outcome: str, seconds: float) -> None:
        self.backend_requests.append((backend, outcome))
        self.seconds.append(seconds)

    def image_stored(self, backend: str) -> None:
        self.stored.append(backend)

    def busy_rejected(self) -> None:
        self.busy += 1


class _UnreachableBackend(PlaceholderBackend):
    """A backend whose server cannot be reached."""

    name = "unreachable"

    async def generate(
        self, request: GenerationRequest, progress: ProgressReporter
    ) -> list[GeneratedImage]:
        raise BackendUnavailableError("connection refused")


class _ShortBackend(PlaceholderBackend):
    """A backend that answers with one image fewer than asked for."""

    name = "short"

    async def generate(
        self, request: GenerationRequest, progress: ProgressReporter
    ) -> list[GeneratedImage]:
        images = await super().generate(request, progress)
        return images[:-1]


class _FaultyBackends:
    @hookimpl
    def register_backends(self, register: Callable[[type[Any]], None]) -> None:
        register(_UnreachableBackend)
        register(_ShortBackend)


@pytest.fixture
def build(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., tuple[ImageService, Recorder]]:
    plugin_manager.register(_FaultyBackends(), name="faulty-backends")

    def build_one(
        data: dict[str, Any] | None = None,
    ) -> tuple[ImageService, Recorder]:
        recorder = Recorder()
        settings = make_settings(
            {
                "backends": {
                    "down": {"type": "unreachable"},
                    "short": {"type": "short"},
                },
                **(data or {}),
            }
        )
        service = build_service(settings, plugin_manager, observer=recorder)
        return service, recorder

    return build_one


def small(**fields: Any) -> GenerationRequest:
    return GenerationRequest.model_validate(
        {"prompt": "a small cat", "width": 64, "height": 64, **fields}
    )


def test_the_recorder_and_the_default_are_observers() -> None:
    assert isinstance(Recorder(), ServiceObserver)
    assert isinstance(NULL_OBSERVER, ServiceObserver)


async def test_a_generation_reports_one_ok_backend_request_and_each_image_stored(
    build: Callable[..., tuple[ImageService, Recorder]],
) -> None:
    service, seen = build()
    async with service:
        await service.generate(small(num_images=2))
        [source] = await service.generate(small())
        await service.transform(source.record.id, ["metadata"])

    assert seen.backend_requests == [("placeholder", "ok"), ("placeholder", "ok")]
    assert all(s >= 0 for s in seen.seconds)
    # A transform stores an image too (credited to the source's backend) but
    # sends no backend request.
    assert seen.stored == ["placeholder"] * 4
    assert seen.busy == 0


async def test_a_backend_error_is_reported_by_its_class_and_nothing_is_stored(
    build: Callable[..., tuple[ImageService, Recorder]],
) -> None:
    service, seen = build()
    async with service:
        with pytest.raises(BackendUnavailableError):
            await service.generate(small(), backend="down")
        with pytest.raises(BadBackendResponseError):
            await service.generate(small(num_images=2), backend="short")

    assert seen.backend_requests == [
        ("down", "BackendUnavailableError"),
        ("short", "BadBackendResponseError"),
    ]
    assert seen.stored == []


async def test_a_cancelled_generation_is_reported_as_cancelled(
    build: Callable[..., tuple[ImageService, Recorder]],
) -> None:
    service, seen = build({"backends": {"placeholder": {"delay_ms": 100}}})
    running = anyio.Event()

    async def progress(
        done: float, total: float | None = None, message: str | None = None
    ) -> None:
        running.set()

    async with service, anyio.create_task_group() as group:
        group.start_soon(service.generate, small(steps=50), progress)
        await running.wait()
        group.cancel_scope.cancel()

    assert seen.backend_requests == [("placeholder", "cancelled")]
    assert seen.stored == []


@pytest.mark.parametrize(
    ("queue", "message"),
    [
        ({"max_queued_generations": 0}, "1 generations running and 0 waiting"),
        (
            {"max_queued_generations": 1, "queue_timeout": 0.2},
            "no generation slot became free within 0.2 s",
        ),
    ],
    ids=["queue-full", "queue-timeout"],
)
async def test_a_busy_rejection_is_reported(
    build: Callable[..., tuple[ImageService, Recorder]],
    queue: dict[str, Any],
    message: str,
) -> None:
    service, seen = build(
        {
            "server": {"max_concurrent_generations": 1, **queue},
            "backends": {"placeholder": {"delay_ms": 100}},
        }
    )
    running = anyio.Event()

    async def progress(
        done: float, total: float | None = None, message: str | None = None
    ) -> None:
        running.set()

    async with service, anyio.create_task_group() as group:
        group.start_soon(service.generate, small(steps=50), progress)
        await running.wait()
        with pytest.raises(BusyError, match=message):
            await service.generate(small())
        group.cancel_scope.cancel()

    assert seen.busy == 1
    # The refused call never reached the backend.
    assert seen.backend_requests == [("placeholder", "cancelled")]
