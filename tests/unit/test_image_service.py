"""ImageService: limits, backends, formats, post-processing, busy, retention."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image
from structlog.testing import capture_logs

from mcp_imagegen import (
    BusyError,
    Capabilities,
    ComponentSettings,
    ConfigurationError,
    GeneratedImage,
    GenerationRequest,
    Health,
    ImageNotFoundError,
    ImageRecord,
    ImageServiceAPI,
    PostProcessingError,
    PostProcessor,
    ProcessingContext,
    ValidationError,
    hookimpl,
    new_image_id,
)
from mcp_imagegen._app import build_service, create_server, effective_configuration
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import PluginManager
from mcp_imagegen._service import ImageService
from mcp_imagegen_file.storage import FileStorage, FileStorageSettings
from mcp_imagegen_placeholder.backend import PlaceholderBackend
from tests.conftest import make_record, png_bytes

pytestmark = pytest.mark.anyio


class StampSettings(ComponentSettings):
    label: str = "x"


class StampStep(PostProcessor):
    """Appends its label to ``parameters["trail"]``: shows which steps ran, in order."""

    name = "test_stamp"
    Settings = StampSettings
    settings: StampSettings

    async def process(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        trail = str(image.parameters.get("trail", "")) + self.settings.label
        return image.model_copy(
            update={"parameters": {**image.parameters, "trail": trail}}
        )


class CrashingStep(PostProcessor):
    name = "test_crash"

    async def process(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        raise ZeroDivisionError("step bug")


class NeedsTextSettings(ComponentSettings):
    text: str


class NeedsTextStep(PostProcessor):
    """A step type that cannot run without its own table (``text`` is required)."""

    name = "needs_text"
    Settings = NeedsTextSettings
    settings: NeedsTextSettings

    async def process(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        return image.model_copy(update={"parameters": {"trail": self.settings.text}})


class TestSteps:
    @hookimpl
    def register_postprocessors(self, register: Callable[[type[Any]], None]) -> None:
        register(StampStep)
        register(CrashingStep)


@pytest.fixture
def plugins(plugin_manager: PluginManager) -> PluginManager:
    plugin_manager.register(TestSteps(), name="test-steps")
    return plugin_manager


@pytest.fixture
def build(
    make_settings: Callable[..., Settings], plugins: PluginManager
) -> Callable[..., ImageService]:
    def build_one(data: dict[str, Any] | None = None) -> ImageService:
        return build_service(make_settings(data), plugins)

    return build_one


def small(**fields: Any) -> GenerationRequest:
    return GenerationRequest.model_validate(
        {"prompt": "a small cat", "width": 64, "height": 64, **fields}
    )


# -- limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": ""}, "prompt must not be empty"),
        ({"prompt": " \t\n "}, "prompt must not be empty"),
        ({"prompt": "a" * 1001}, "prompt is 1001 characters long; the limit is 1000"),
        ({"negative_prompt": "n" * 1001}, "negative_prompt is 1001 characters"),
        ({"width": 56}, "width 56 is out of range: use 64 to 2048"),
        ({"width": 2056}, "width 2056 is out of range"),
        ({"width": 100}, "width 100 is not a multiple of 8: use 96 or 104"),
        ({"height": 0}, "height 0 is out of range"),
        ({"height": 4096}, "height 4096 is out of range"),
        ({"height": 90}, "height 90 is not a multiple of 8"),
        ({"num_images": 0}, "num_images 0 is out of range: use 1 to 4"),
        ({"num_images": 5}, "num_images 5 is out of range: use 1 to 4"),
        ({"steps": 0}, "steps 0 is out of range"),
        ({"guidance_scale": -1.0}, "guidance_scale -1.0 is out of range"),
        ({"seed": -1}, "seed -1 is out of range"),
        ({"seed": 2**32}, "seed 4294967296 is out of range"),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, str) else None,
)
async def test_request_outside_the_limits_is_refused_naming_the_argument(
    fields: dict[str, Any], message: str, build: Callable[..., ImageService]
) -> None:
    async with build() as service:
        with pytest.raises(ValidationError) as caught:
            await service.generate(small(**fields))

        assert message in str(caught.value)
        assert (await service.list_images()).items == []


async def test_prompt_of_exactly_the_limit_is_accepted(
    build: Callable[..., ImageService],
) -> None:
    async with build() as service:
        [generated] = await service.generate(small(prompt="a" * 1000))
        record = generated.record

    assert len(record.prompt) == 1000


async def test_too_many_pixels_is_refused_with_a_size_that_fits(
    build: Callable[..., ImageService],
) -> None:
    async with build({"limits": {"max_pixels": 256 * 256}}) as service:
        with pytest.raises(ValidationError) as caught:
            await service.generate(small(width=256, height=264))

    assert "256x264 is 67584 pixels; the limit is 65536" in str(caught.value)
    assert "256 squared" in str(caught.value)


async def test_configured_limits_replace_the_defaults(
    build: Callable[..., ImageService],
) -> None:
    service = build({"limits": {"max_prompt_length": 5, "max_images": 2}})
    async with service:
        with pytest.raises(ValidationError, match="limit is 5"):
            await service.generate(small(prompt="abcdef"))
        with pytest.raises(ValidationError, match="use 1 to 2"):
            await service.generate(small(prompt="cat", num_images=3))


async def test_prompt_is_stored_without_surrounding_whitespace(
    build: Callable[..., ImageService],
) -> None:
    async with build() as service:
        [generated] = await service.generate(
            small(prompt="  a cat \n", negative_prompt=" ")
        )
        record = generated.record

    assert record.prompt == "a cat"
    assert record.negative_prompt is None


# -- backends and formats ----------------------------------------------------------


async def test_unknown_backend_is_refused_listing_the_available_ones(
    build: Callable[..., ImageService],
) -> None:
    async with build({"backends": {"slow": {"type": "placeholder"}}}) as service:
        with pytest.raises(ValidationError) as caught:
            await service.generate(small(), backend="sdxl")

    assert "Unknown backend 'sdxl'. Available: placeholder, slow." in str(caught.value)


async def test_named_backend_instance_is_used_and_recorded(
    build: Callable[..., ImageService],
) -> None:
    async with build({"backends": {"other": {"type": "placeholder"}}}) as service:
        [generated] = await service.generate(small(), backend="other")
        record = generated.record

    assert record.backend == "other"


@pytest.mark.parametrize("fmt", ["bmp", "gif", "", "png; rm -rf /"])
async def test_unknown_output_format_is_refused_listing_the_known_ones(
    fmt: str, build: Callable[..., ImageService]
) -> None:
    async with build() as service:
        with pytest.raises(ValidationError, match="use one of png, jpeg, webp"):
            await service.generate(small(), output_format=fmt or " ")


@pytest.mark.parametrize(
    ("fmt", "mime", "pil_format"),
    [
        ("jpeg", "image/jpeg", "JPEG"),
        ("JPG", "image/jpeg", "JPEG"),
        ("webp", "image/webp", "WEBP"),
        ("png", "image/png", "PNG"),
    ],
)
async def test_output_format_converts_the_stored_image(
    fmt: str, mime: str, pil_format: str, build: Callable[..., ImageService]
) -> None:
    async with build() as service:
        [generated] = await service.generate(small(), output_format=fmt)
        record = generated.record
        stored = await service.load(record.id)

    decoded = Image.open(io.BytesIO(stored.data))
    assert record.mime_type == mime
    assert decoded.format == pil_format
    assert decoded.size == (64, 64)
    assert record.byte_size == len(stored.data)


async def test_configured_output_format_is_the_default(
    build: Callable[..., ImageService],
) -> None:
    async with build({"generation": {"output_format": "webp"}}) as service:
        [generated] = await service.generate(small())
        record = generated.record

    assert record.mime_type == "image/webp"


async def test_record_holds_what_is_needed_to_reproduce_the_image(
    build: Callable[..., ImageService],
) -> None:
    async with build() as service:
        pair = await service.generate(
            small(seed=99, num_images=2, steps=3, negative_prompt="dogs")
        )
        [repeat] = await service.generate(
            small(seed=100, steps=3, negative_prompt="dogs")
        )
        records = [image.record for image in pair]
        again = [repeat.record]
        second = await service.load(records[1].id)
        reproduced = await service.load(again[0].id)

    assert [r.seed for r in records] == [99, 100]
    assert records[0].negative_prompt == "dogs"
    assert records[0].model == "placeholder-v1"
    assert records[0].steps == 3
    assert second.data == reproduced.data


async def test_backend_default_steps_are_recorded_when_the_request_gives_none(
    build: Callable[..., ImageService],
) -> None:
    config = {"backends": {"placeholder": {"default_steps": 7}}}
    async with build(config) as service:
        [generated] = await service.generate(small())
        record = generated.record

    assert record.steps == 7


async def test_seed_is_drawn_when_the_request_gives_none(
    build: Callable[..., ImageService],
) -> None:
    async with build() as service:
        [generated] = await service.generate(small())
        record = generated.record

    assert record.seed is not None
    assert 0 <= record.seed < 2**32


# -- post-processing -----------------------------------------------------------------


async def test_post_processing_chain_runs_in_the_configured_order(
    build: Callable[..., ImageService],
) -> None:
    service = build(
        {
            "postprocess": {
                "first": {"type": "test_stamp", "label": "A"},
                "second": {"type": "test_stamp", "label": "B"},
            },
            "generation": {"postprocess": ["second", "first", "second"]},
        }
    )
    async with service:
        [generated] = await service.generate(small())
        record = generated.record

    assert record.parameters["trail"] == "BAB"
    assert record.postprocess == ["second", "first", "second"]


async def test_request_chain_replaces_the_configured_chain(
    build: Callable[..., ImageService],
) -> None:
    service = build(
        {
            "postprocess": {"first": {"type": "test_stamp", "label": "A"}},
            "generation": {"postprocess": ["first"]},
        }
    )
    async with service:
        [generated] = await service.generate(small(), postprocess=[])
        plain = generated.record
        [generated] = await service.generate(
            small(), postprocess=["test_stamp", "first"]
        )
        custom = generated.record

    assert "trail" not in plain.parameters
    assert custom.parameters["trail"] == "xA"


async def test_unknown_step_in_a_request_is_a_validation_error(
    build: Callable[..., ImageService],
) -> None:
    async with build() as service:
        with pytest.raises(
            ValidationError, match="unknown post-processing step 'no_such_step'"
        ):
            await service.generate(small(), postprocess=["no_such_step"])


def test_unknown_step_in_the_configured_chain_is_a_configuration_error(
    build: Callable[..., ImageService],
) -> None:
    with pytest.raises(
        ConfigurationError, match=r"generation\.postprocess: .*'no_such_step'"
    ):
        build({"generation": {"postprocess": ["no_such_step"]}})


async def test_crashing_step_is_a_post_processing_error_and_stores_nothing(
    build: Callable[..., ImageService],
) -> None:
    async with build() as service:
        with pytest.raises(PostProcessingError) as caught:
            await service.generate(small(), postprocess=["test_crash"])
        listed = await service.list_images()

    assert "'test_crash' failed: ZeroDivisionError: step bug" in str(caught.value)
    assert listed.items == []


async def test_step_type_with_required_settings_does_not_break_start_up(
    make_settings: Callable[..., Settings], plugins: PluginManager
) -> None:
    class NeedsTextPlugin:
        @hookimpl
        def register_postprocessors(
            self, register: Callable[[type[Any]], None]
        ) -> None:
            register(NeedsTextStep)

    plugins.register(NeedsTextPlugin(), name="needs-text")
    settings = make_settings(
        {"postprocess": {"caption": {"type": "needs_text", "text": "C"}}}
    )

    async with build_service(settings, plugins) as service:
        [generated] = await service.generate(small(), postprocess=["caption"])
        record = generated.record
        with pytest.raises(ValidationError, match="'needs_text'"):
            await service.generate(small(), postprocess=["needs_text"])

    assert record.parameters["trail"] == "C"


async def test_transform_stores_a_new_image_and_keeps_the_source(
    build: Callable[..., ImageService],
) -> None:
    async with build() as service:
        [generated] = await service.generate(small())
        source = generated.record
        before = await service.load(source.id)
        derived = (
            await service.transform(source.id, ["test_stamp"], output_format="jpeg")
        ).record
        after = await service.load(source.id)

    assert derived.id != source.id
    assert derived.source_image_id == source.id
    assert derived.mime_type == "image/jpeg"
    assert derived.parameters["trail"] == "x"
    assert after == before


# -- concurrency ---------------------------------------------------------------------


async def wait_for_progress(service: ImageService, started: anyio.Event) -> None:
    async def progress(
        done: float, total: float | None = None, message: str | None = None
    ) -> None:
        started.set()

    await service.generate(small(steps=50), progress)


async def test_busy_error_when_every_slot_and_the_queue_are_full(
    build: Callable[..., ImageService],
) -> None:
    service = build(
        {
            "server": {"max_concurrent_generations": 1, "max_queued_generations": 0},
            "backends": {"placeholder": {"delay_ms": 200}},
        }
    )
    async with service, anyio.create_task_group() as group:
        running = anyio.Event()
        group.start_soon(wait_for_progress, service, running)
        await running.wait()

        with pytest.raises(BusyError) as caught:
            await service.generate(small())

        group.cancel_scope.cancel()

    assert "The server is busy: 1 generations running and 0 waiting" in str(
        caught.value
    )


async def test_busy_error_when_no_slot_frees_up_within_the_queue_timeout(
    build: Callable[..., ImageService],
) -> None:
    service = build(
        {
            "server": {
                "max_concurrent_generations": 1,
                "max_queued_generations": 4,
                "queue_timeout": 0.2,
            },
            "backends": {"placeholder": {"delay_ms": 60_000}},
        }
    )
    async with service, anyio.create_task_group() as group:
        running = anyio.Event()
        group.start_soon(wait_for_progress, service, running)
        await anyio.wait_all_tasks_blocked()

        with pytest.raises(BusyError, match="no generation slot became free within"):
            await service.generate(small())

        group.cancel_scope.cancel()


async def test_queued_request_runs_once_a_slot_frees_up(
    build: Callable[..., ImageService],
) -> None:
    service = build(
        {
            "server": {"max_concurrent_generations": 1, "max_queued_generations": 1},
            "backends": {"placeholder": {"delay_ms": 20}},
        }
    )
    async with service:
        results: list[str] = []

        async def run() -> None:
            [generated] = await service.generate(small(steps=2))
            record = generated.record
            results.append(record.id)

        async with anyio.create_task_group() as group:
            group.start_soon(run)
            group.start_soon(run)

    assert len(set(results)) == 2


async def test_eight_concurrent_generations_all_succeed_with_distinct_ids(
    build: Callable[..., ImageService], image_dir: Path
) -> None:
    ids: list[str] = []

    async def one(index: int) -> None:
        [generated] = await service.generate(small(prompt=f"cat {index}"))
        record = generated.record
        ids.append(record.id)

    async with build() as service, anyio.create_task_group() as group:
        for index in range(8):
            group.start_soon(one, index)

    assert len(set(ids)) == 8
    stored = sorted([path.stem async for path in anyio.Path(image_dir).rglob("*.png")])
    assert stored == sorted(ids)


# -- retention -----------------------------------------------------------------------


async def test_retention_task_deletes_expired_images_and_stops_at_shutdown(
    build: Callable[..., ImageService], image_dir: Path
) -> None:
    old_id = new_image_id(datetime.now(UTC) - timedelta(days=3))
    async with FileStorage(FileStorageSettings(directory=image_dir)) as storage:
        data = png_bytes()
        await storage.save(make_record(data, image_id=old_id), data)
    service = build({"storage": {"max_age": "P1D", "cleanup_interval": "PT1H"}})

    with anyio.fail_after(30):  # safety net: an uncancelled loop would hang here
        async with service:
            [generated] = await service.generate(small())
            fresh = generated.record
            # The task runs in the background; its only visible effect is the
            # listing, so poll it (bounded by the fail_after above).
            while len((await service.list_images()).items) != 1:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            [remaining] = (await service.list_images()).items

    assert remaining.id == fresh.id
    with pytest.raises(ImageNotFoundError):
        await FileStorage(FileStorageSettings(directory=image_dir)).load(old_id)


class _ExplodingRetentionStorage(FileStorage):
    """File storage whose expiry sweep fails with an unexpected error type."""

    name = "exploding_retention"

    async def delete_expired(self, older_than: datetime) -> int:
        self.sweeps = getattr(self, "sweeps", 0) + 1
        raise RuntimeError("sweep exploded")


async def test_unexpected_retention_failure_is_logged_and_the_service_keeps_serving(
    make_settings: Callable[..., Settings], plugins: PluginManager, image_dir: Path
) -> None:
    class Plugin:
        @hookimpl
        def register_storages(self, register: Callable[[type[Any]], None]) -> None:
            register(_ExplodingRetentionStorage)

    plugins.register(Plugin(), name="exploding")
    settings = make_settings(
        {
            "storage": {
                "backend": "exploding_retention",
                "max_age": "P1D",
                "exploding_retention": {"directory": str(image_dir)},
            }
        }
    )
    service = build_service(settings, plugins)
    assert isinstance(service.storage, _ExplodingRetentionStorage)

    with capture_logs() as logs, anyio.fail_after(30):
        async with service:
            while not getattr(service.storage, "sweeps", 0):  # noqa: ASYNC110
                await anyio.sleep(0.01)
            [generated] = await service.generate(small())
            record = generated.record

    assert record.id
    [failure] = [e for e in logs if e["event"] == "retention_failed"]
    assert "sweep exploded" in failure["error"]


async def test_delete_expired_is_a_no_op_without_max_age(
    build: Callable[..., ImageService],
) -> None:
    async with build() as service:
        await service.generate(small())

        assert await service.delete_expired() == 0
        assert len((await service.list_images()).items) == 1


# -- reading -------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_list_limit_out_of_range_is_refused(
    limit: int, build: Callable[..., ImageService]
) -> None:
    async with build() as service:
        with pytest.raises(ValidationError, match="use 1 to 100"):
            await service.list_images(limit)


async def test_describe_backends_reports_default_capabilities_and_health(
    build: Callable[..., ImageService],
) -> None:
    async with build({"backends": {"extra": {"type": "placeholder"}}}) as service:
        infos = {info.name: info for info in await service.describe_backends()}

    assert infos["placeholder"].default is True
    assert infos["extra"].default is False
    assert infos["extra"].type == "placeholder"
    assert infos["extra"].health.status == "ok"
    assert infos["extra"].capabilities.models == ["placeholder-v1"]


class _RecordingRetentionStorage(FileStorage):
    """File storage that records the retention task's calls (a boundary)."""

    name = "recording_retention"
    fail_orphans = False

    async def start(self) -> None:
        # The file storage sweeps at start-up on its own; record only what the
        # service's retention task asks for afterwards.
        await super().start()
        self.expiry_calls = []
        self.orphan_calls = []
        self.started = True

    async def delete_expired(self, older_than: datetime) -> int:
        self.expiry_calls: list[datetime] = [
            *getattr(self, "expiry_calls", []),
            older_than,
        ]
        return await super().delete_expired(older_than)

    async def remove_orphans(self, older_than: datetime) -> int:
        self.orphan_calls: list[datetime] = [
            *getattr(self, "orphan_calls", []),
            older_than,
        ]
        if self.fail_orphans and getattr(self, "started", False):
            raise OSError("orphan sweep exploded")
        return await super().remove_orphans(older_than)


def _recording_service(
    make_settings: Callable[..., Settings],
    plugins: PluginManager,
    image_dir: Path,
    storage: dict[str, Any],
) -> ImageService:
    class Plugin:
        @hookimpl
        def register_storages(self, register: Callable[[type[Any]], None]) -> None:
            register(_RecordingRetentionStorage)

    plugins.register(Plugin(), name="recording")
    settings = make_settings(
        {
            "storage": {
                "backend": "recording_retention",
                "recording_retention": {"directory": str(image_dir)},
                **storage,
            }
        }
    )
    return build_service(settings, plugins)


async def test_retention_task_sweeps_orphans_even_without_max_age(
    make_settings: Callable[..., Settings], plugins: PluginManager, image_dir: Path
) -> None:
    service = _recording_service(
        make_settings, plugins, image_dir, {"orphan_grace": "PT2H"}
    )
    before = datetime.now(UTC)
    with anyio.fail_after(30):
        async with service:
            while not getattr(service.storage, "orphan_calls", []):  # noqa: ASYNC110
                await anyio.sleep(0.01)
    after = datetime.now(UTC)

    [cutoff] = service.storage.orphan_calls  # type: ignore[attr-defined]
    assert before - timedelta(hours=2) <= cutoff <= after - timedelta(hours=2)
    assert not getattr(service.storage, "expiry_calls", [])  # no max_age: no expiry


async def test_retention_task_expires_and_sweeps_orphans_with_max_age(
    make_settings: Callable[..., Settings], plugins: PluginManager, image_dir: Path
) -> None:
    service = _recording_service(make_settings, plugins, image_dir, {"max_age": "P1D"})
    with anyio.fail_after(30):
        async with service:
            while not getattr(service.storage, "orphan_calls", []):  # noqa: ASYNC110
                await anyio.sleep(0.01)

    assert len(service.storage.expiry_calls) == 1  # type: ignore[attr-defined]


async def test_failing_orphan_sweep_is_logged_and_the_service_keeps_serving(
    make_settings: Callable[..., Settings], plugins: PluginManager, image_dir: Path
) -> None:
    service = _recording_service(make_settings, plugins, image_dir, {})
    service.storage.fail_orphans = True  # type: ignore[attr-defined]
    with capture_logs() as logs, anyio.fail_after(30):
        async with service:
            while not getattr(service.storage, "orphan_calls", []):  # noqa: ASYNC110
                await anyio.sleep(0.01)
            [generated] = await service.generate(small())
            record = generated.record

    assert record.id
    [failure] = [e for e in logs if e["event"] == "orphan_sweep_failed"]
    assert "orphan sweep exploded" in failure["error"]


class _BrokenHealthBackend(PlaceholderBackend):
    """A backend whose health check has a bug (raises an unexpected error)."""

    name = "broken_health"

    async def check_health(self) -> Health:
        raise KeyError("health bug")


async def test_backend_whose_health_check_crashes_is_reported_unavailable(
    make_settings: Callable[..., Settings], plugins: PluginManager
) -> None:
    class Plugin:
        @hookimpl
        def register_backends(self, register: Callable[[type[Any]], None]) -> None:
            register(_BrokenHealthBackend)

    plugins.register(Plugin(), name="broken-health")
    settings = make_settings({"backends": {"broken": {"type": "broken_health"}}})
    with capture_logs() as logs:
        async with build_service(settings, plugins) as service:
            infos = {info.name: info for info in await service.describe_backends()}

    [crash] = [e for e in logs if e["event"] == "health_check_crashed"]
    assert crash["backend"] == "broken"

    assert infos["placeholder"].health.status == "ok"
    assert infos["broken"].health.status == "unavailable"
    detail = infos["broken"].health.detail
    assert detail == (
        "health check failed unexpectedly (KeyError); the server log has the details"
    )
    assert "health bug" not in detail  # an unexpected error's text stays in the log


# -- image_stored listeners ---------------------------------------------------------


class _BlockedListener:
    """An ``image_stored`` listener that waits until the test releases it."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.started: list[str] = []
        self.finished: list[str] = []

    @hookimpl
    async def image_stored(self, record: ImageRecord) -> None:
        self.started.append(record.id)
        await self.release.wait()
        self.finished.append(record.id)


async def test_slow_image_stored_listener_does_not_delay_the_reply(
    build: Callable[..., ImageService], plugins: PluginManager
) -> None:
    listener = _BlockedListener()
    plugins.register(listener, name="slow-listener")

    with anyio.fail_after(20):  # before the fix, generate waited for the listener
        async with build() as service:
            [generated] = await service.generate(small())
            record = generated.record
            assert listener.finished == []  # the reply came first
            listener.release.set()
    # Leaving the service waits for listeners still running (within their timeout).
    assert listener.finished == [record.id]


async def test_image_stored_listener_past_its_timeout_is_cancelled_and_logged(
    build: Callable[..., ImageService], plugins: PluginManager
) -> None:
    listener = _BlockedListener()  # never released
    plugins.register(listener, name="stuck-listener")

    with capture_logs() as logs, anyio.fail_after(20):
        async with build({"plugins": {"image_stored_timeout": 0.2}}) as service:
            [generated] = await service.generate(small())
            record = generated.record

    assert listener.started == [record.id]
    assert listener.finished == []
    [event] = [e for e in logs if e["event"] == "image_stored_hook_timed_out"]
    assert event["plugin"] == "stuck-listener"
    assert event["image_id"] == record.id
    assert event["timeout_s"] == 0.2


# -- format size limits -------------------------------------------------------------


class _WideBackend(PlaceholderBackend):
    """A placeholder that accepts any size the limits allow (like a big model)."""

    name = "wide"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(min_side=8, max_side=70_000, max_pixels=10**7)


@pytest.fixture
def wide(
    make_settings: Callable[..., Settings], plugins: PluginManager
) -> Callable[..., ImageService]:
    class Plugin:
        @hookimpl
        def register_backends(self, register: Callable[[type[Any]], None]) -> None:
            register(_WideBackend)

    plugins.register(Plugin(), name="wide-backend")

    def build_one(data: dict[str, Any] | None = None) -> ImageService:
        base = {
            "backends": {"wide": {}},
            "generation": {"backend": "wide", "postprocess": []},
            "limits": {"min_side": 8, "max_side": 70_000, "max_pixels": 10**7},
            "postprocess": {
                "huge": {"type": "resize", "width": 16384, "upscale": True}
            },
        }
        return build_service(make_settings({**base, **(data or {})}), plugins)

    return build_one


@pytest.mark.parametrize(
    ("fmt", "width", "limit"), [("webp", 16392, 16383), ("jpeg", 65504, 65500)]
)
async def test_output_format_beyond_its_size_limit_is_refused_clearly(
    fmt: str, width: int, limit: int, wide: Callable[..., ImageService]
) -> None:
    async with wide() as service:
        with pytest.raises(ValidationError) as caught:
            await service.generate(small(width=width, height=8), output_format=fmt)
        # The server keeps serving, and nothing was stored.
        assert (await service.list_images()).items == []
        await service.generate(small(width=width, height=8), output_format="png")

    message = str(caught.value)
    name = "JPEG" if fmt == "jpeg" else "WebP"
    assert f"{name} allows at most {limit}" in message
    assert f"{width}x8" in message
    assert "png" in message


async def test_convert_step_beyond_the_format_size_limit_is_refused_clearly(
    wide: Callable[..., ImageService],
) -> None:
    async with wide() as service:
        with pytest.raises(ValidationError, match="WebP allows at most 16383"):
            await service.generate(
                small(width=16392, height=8), postprocess=["convert"]
            )


async def test_transform_resizing_beyond_the_format_size_limit_is_refused_clearly(
    wide: Callable[..., ImageService],
) -> None:
    async with wide() as service:
        [generated] = await service.generate(small(width=2048, height=64))
        source = generated.record
        with pytest.raises(ValidationError, match="WebP allows at most 16383"):
            await service.transform(source.id, ["huge"], output_format="webp")
        assert [r.id for r in (await service.list_images()).items] == [source.id]


def test_effective_configuration_shows_every_retention_setting(
    build: Callable[..., ImageService],
) -> None:
    service = build({"storage": {"orphan_grace": "PT2H", "max_age": "P1D"}})

    storage = effective_configuration(service)["storage"]

    assert storage["orphan_grace"] == "PT2H"
    assert storage["max_age"] == "P1D"
    assert "cleanup_interval" in storage


# -- structure: one composition root, public types in the hooks ---------------------


def _module_files(module: str) -> list[Path]:
    """The source files of ``module``: its file, or every file of its package."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    origin = Path(spec.origin)
    if spec.submodule_search_locations:
        return sorted(origin.parent.rglob("*.py"))
    return [origin]


def _is_type_checking_block(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )


def _imported_modules(path: Path, *, runtime_only: bool) -> set[str]:
    """Modules ``path`` imports (absolute ``from`` imports and plain imports)."""
    skipped: set[int] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if runtime_only:
        for block in filter(_is_type_checking_block, ast.walk(tree)):
            skipped.update(id(node) for node in ast.walk(block))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_service_loads_neither_configuration_nor_plugins() -> None:
    # The composition root (_app) builds the service; the service may name the
    # settings models in type hints only.
    for path in _module_files("mcp_imagegen._service"):
        imported = _imported_modules(path, runtime_only=True)
        assert not imported & {"mcp_imagegen._config", "mcp_imagegen._plugins"}, path


def test_hook_specifications_name_only_public_modules() -> None:
    [path] = _module_files("mcp_imagegen.hookspecs")

    internal = {
        name
        for name in _imported_modules(path, runtime_only=False)
        if name.startswith("mcp_imagegen._")
    }

    assert internal == set()


@pytest.mark.parametrize(
    "member",
    sorted(name for name in vars(ImageServiceAPI) if not name.startswith("_")),
)
def test_the_service_keeps_every_member_of_its_public_interface(member: str) -> None:
    public = inspect.signature(getattr(ImageServiceAPI, member))
    actual = inspect.signature(getattr(ImageService, member))

    assert actual == public


async def test_register_tools_hook_gets_a_service_with_the_public_interface(
    make_settings: Callable[..., Settings], plugins: PluginManager
) -> None:
    received: list[object] = []

    class Tools:
        @hookimpl
        def register_tools(self, server: Any, service: ImageServiceAPI) -> None:
            received.append(service)

    plugins.register(Tools(), name="tools")
    create_server(make_settings(), plugins)

    [service] = received
    assert isinstance(service, ImageServiceAPI)
    async with service:  # type: ignore[attr-defined]
        [generated] = await service.generate(small())
        record = generated.record
        stored = await service.load(record.id)
    assert stored.record.id == record.id
    assert stored.record.sha256 == record.sha256


async def test_generate_and_transform_return_the_stored_images_with_their_bytes(
    build: Callable[..., ImageService],
) -> None:
    # Issue 9: one method per operation; the record is .record, the bytes .data.
    async with build() as service:
        [image] = await service.generate(small())
        derived = await service.transform(image.record.id, ["test_stamp"])
        stored = await service.load(image.record.id)
        stored_derived = await service.load(derived.record.id)

    # Records compare by id: the returned one also carries the save's duration.
    assert (image.record.id, image.data) == (stored.record.id, stored.data)
    assert (derived.record.id, derived.data) == (
        stored_derived.record.id,
        stored_derived.data,
    )
    assert derived.record.source_image_id == image.record.id


def test_the_service_interface_has_no_wrapper_pairs() -> None:
    for name in ("generate_stored", "transform_stored"):
        assert not hasattr(ImageServiceAPI, name), name
        assert not hasattr(ImageService, name), name
