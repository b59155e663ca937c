"""ImageService: the pipeline behind every tool.

validate → concurrency slot → backend.generate → post-processing chain →
concurrent saves → ``image_stored`` events. The MCP surface (server.py) and the CLI
are thin layers over this class; it knows components only by their interfaces.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import anyio
import pydantic
import structlog
from pydantic import BaseModel

from mcp_imagegen._config import (
    Settings,
    StorageSettings,
    redact,
    redacted_dump,
    validate_component_table,
)
from mcp_imagegen._ids import new_image_id, validate_image_id
from mcp_imagegen._memory import release_free_memory
from mcp_imagegen._plugins import Kind, PluginManager, load_plugins
from mcp_imagegen.errors import (
    BadBackendResponseError,
    BusyError,
    ConfigurationError,
    MCPImageError,
    PostProcessingError,
    StorageError,
    ValidationError,
)
from mcp_imagegen.imaging import ImageDecodeError, convert_format
from mcp_imagegen.interfaces import (
    Component,
    ImageStorage,
    InferenceBackend,
    PostProcessor,
)
from mcp_imagegen.models import (
    OUTPUT_FORMATS,
    Capabilities,
    Durations,
    GeneratedImage,
    GenerationRequest,
    Health,
    ImagePage,
    ImageRecord,
    ProcessingContext,
    ProgressReporter,
    StoredImage,
    ignore_progress,
)

log = structlog.get_logger("mcp_imagegen._service")

HEALTH_CHECK_TIMEOUT = 5.0
MAX_LIST_LIMIT = 100
#: Requests decoding at least this many pixels in all trim the heap afterwards.
RELEASE_AFTER_PIXELS = 1024 * 1024


class BackendInfo(BaseModel):
    """A backend instance as shown by ``list_backends``."""

    name: str
    type: str
    default: bool
    capabilities: Capabilities
    health: Health


class ImageService:
    """Generates, post-processes, stores and serves images.

    Build it with :meth:`from_settings`, then use it as an async context manager:
    entering starts every component and the retention task, leaving stops them.
    """

    def __init__(
        self,
        settings: Settings,
        plugins: PluginManager,
        backends: dict[str, InferenceBackend],
        storage: ImageStorage,
        steps: dict[str, PostProcessor],
    ) -> None:
        self.settings = settings
        self.plugins = plugins
        self.backends = backends
        self.storage = storage
        self.steps = steps
        self.default_chain = self.resolve_chain(
            settings.generation.postprocess, key="generation.postprocess"
        )
        self._slots = anyio.Semaphore(settings.server.max_concurrent_generations)
        # Post-processing decodes whole images (12 MB each at 2048²) in worker
        # threads; more at once than there are cores is no faster, only bigger.
        self._processing = anyio.Semaphore(max(1, os.cpu_count() or 1))
        self._waiting = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        # image_stored listeners run here, after the reply; leaving the service
        # waits for them (each bounded by plugins.image_stored_timeout).
        self._listeners: anyio.abc.TaskGroup | None = None
        self._started: list[Component] = []

    # -- construction --------------------------------------------------------

    @classmethod
    def from_settings(
        cls, settings: Settings, plugins: PluginManager | None = None
    ) -> ImageService:
        """Build every configured component (no I/O yet).

        Raises:
            ConfigurationError: for an unknown component type or an invalid table,
                naming the key and where it was set.
        """
        if plugins is None:
            plugins = load_plugins(settings.plugins.disabled)
        settings.check_default_backend(plugins.component_types("backend"))
        backends: dict[str, InferenceBackend] = {}
        for name, raw in settings.backend_instances().items():
            backend = _build_named(settings, plugins, "backend", "backends", name, raw)
            assert isinstance(backend, InferenceBackend)
            backends[name] = backend

        storage_type = settings.storage.backend
        storage_cls = plugins.component_type(
            "storage",
            storage_type,
            key="storage.backend",
            source=settings.source_of("storage.backend"),
        )
        storage_options = validate_component_table(
            settings,
            storage_cls.Settings,
            settings.storage.table(storage_type),
            f"storage.{storage_type}",
        )
        storage = storage_cls(storage_options, instance_name=storage_type)
        for table in settings.storage.table_names():
            # Tables of other registered types may wait for a switch of backend;
            # a table naming no type at all is a typo and must not pass silently.
            key = f"storage.{table}"
            plugins.component_type(
                "storage", table, key=key, source=settings.source_of(key)
            )
        assert isinstance(storage, ImageStorage)

        steps: dict[str, PostProcessor] = {}
        # A step type's own name is a step with default options (when its settings
        # have defaults; a type with required settings is usable only through a
        # [postprocess.<name>] table, and must not break start-up when unused)...
        for type_name, step_cls in plugins.component_types("postprocessor").items():
            if type_name in settings.postprocess:
                continue  # its own table follows
            try:
                options = step_cls.Settings.model_validate({})
            except pydantic.ValidationError:
                log.debug("postprocess_step_needs_settings", step_type=type_name)
                continue
            steps[type_name] = step_cls(options, instance_name=type_name)  # type: ignore[assignment]
        # ...and [postprocess.<name>] tables define named steps (or override those).
        for name, raw in settings.postprocess.items():
            step = _build_named(
                settings, plugins, "postprocessor", "postprocess", name, raw
            )
            assert isinstance(step, PostProcessor)
            steps[name] = step
        return cls(settings, plugins, backends, storage, steps)

    def effective_configuration(self) -> dict[str, Any]:
        """The configuration with every component table filled in, secrets masked."""
        data = redacted_dump(self.settings)
        data["backends"] = {
            name: {"type": backend.name, **backend.settings.model_dump(mode="json")}
            for name, backend in self.backends.items()
        }
        data["storage"] = {
            key: value
            for key, value in data["storage"].items()
            if key in StorageSettings.model_fields
        }
        data["storage"][self.storage.name] = self.storage.settings.model_dump(
            mode="json"
        )
        data["postprocess"] = {
            name: {"type": step.name, **step.settings.model_dump(mode="json")}
            for name, step in self.steps.items()
            if name in self.settings.postprocess
        }
        return redact(data)

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        try:
            for component in [
                self.storage,
                *self.backends.values(),
                *self.steps.values(),
            ]:
                await component.start()
                self._started.append(component)
            self._listeners = anyio.create_task_group()
            await self._listeners.__aenter__()
            self._task_group = anyio.create_task_group()
            await self._task_group.__aenter__()
            # Always: even without max_age, leftovers of interrupted saves are swept.
            self._task_group.start_soon(self._retention_loop)
        except BaseException:
            await self._close_components()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._task_group is not None:
                self._task_group.cancel_scope.cancel()
                await self._task_group.__aexit__(None, None, None)
                self._task_group = None
            if self._listeners is not None:
                listeners, self._listeners = self._listeners, None
                if exc_type is not None:
                    listeners.cancel_scope.cancel()
                await listeners.__aexit__(None, None, None)
        finally:
            await self._close_components()

    async def _close_components(self) -> None:
        with anyio.CancelScope(shield=True):
            while self._started:
                component = self._started.pop()
                try:
                    await component.aclose()
                except Exception as exc:  # closing must go on for the others
                    log.warning(
                        "component_close_failed",
                        component=component.instance_name,
                        error=f"{type(exc).__name__}: {exc}",
                    )

    async def _retention_loop(self) -> None:
        interval = self.settings.storage.cleanup_interval.total_seconds()
        while True:
            await self.delete_expired()
            await self.remove_orphans()
            await anyio.sleep(max(interval, 1.0))

    async def remove_orphans(self) -> int:
        """Remove leftovers of interrupted saves older than ``storage.orphan_grace``.

        Failures are logged, never raised: this runs in the background task group.
        """
        cutoff = datetime.now(UTC) - self.settings.storage.orphan_grace
        try:
            removed = await self.storage.remove_orphans(cutoff)
        except Exception as exc:
            log.warning(
                "orphan_sweep_failed",
                error=f"{type(exc).__name__}: {exc}",
                cutoff=cutoff.isoformat(),
            )
            return 0
        if removed:
            log.info("orphans_removed", count=removed, cutoff=cutoff.isoformat())
        return removed

    async def delete_expired(self) -> int:
        """Delete images older than ``storage.max_age``; return how many."""
        max_age = self.settings.storage.max_age
        if max_age is None:
            return 0
        cutoff = datetime.now(UTC) - max_age
        try:
            deleted = await self.storage.delete_expired(cutoff)
        except MCPImageError as exc:
            log.warning("retention_failed", error=str(exc))
            return 0
        except Exception as exc:
            # Runs in the service's background task group: an unexpected error
            # escaping here would cancel the group's host and stop the server.
            log.exception("retention_failed", error=f"{type(exc).__name__}: {exc}")
            return 0
        if deleted:
            log.info("images_expired", count=deleted, cutoff=cutoff.isoformat())
        return deleted

    # -- validation ----------------------------------------------------------

    def backend(self, name: str | None) -> tuple[str, InferenceBackend]:
        """Return ``(instance name, backend)``; ``None`` means the default.

        Raises:
            ValidationError: for an unknown instance name.
        """
        name = name or self.settings.generation.backend
        if name not in self.backends:
            known = ", ".join(sorted(self.backends))
            raise ValidationError(f"Unknown backend '{name}'. Available: {known}.")
        return name, self.backends[name]

    def resolve_chain(self, names: Sequence[str], *, key: str) -> list[PostProcessor]:
        """Map step names to post-processor instances.

        Raises:
            ConfigurationError: for an unknown step in the configuration.
            ValidationError: for an unknown step in a request.
        """
        chain = []
        for name in names:
            if name not in self.steps:
                known = ", ".join(sorted(self.steps)) or "none are installed"
                message = (
                    f"{key}: unknown post-processing step '{name}' "
                    f"(available: {known})."
                )
                if key.startswith("generation."):
                    source = self.settings.source_of(key)
                    raise ConfigurationError(
                        f"{message[:-1]} [{source}]. List only installed steps, "
                        "or [] for none (the default chain needs the imageops "
                        "plugin)."
                    )
                raise ValidationError(message)
            chain.append(self.steps[name])
        return chain

    def validate(
        self, request: GenerationRequest, capabilities: Capabilities
    ) -> GenerationRequest:
        """Check a request against the limits and the backend; draw a seed if none.

        Raises:
            ValidationError: naming the argument, its value and what is accepted.
        """
        limits = self.settings.limits
        prompt = request.prompt.strip()
        if not prompt:
            raise ValidationError(
                "prompt must not be empty: describe the image to generate."
            )
        if len(prompt) > limits.max_prompt_length:
            raise ValidationError(
                f"prompt is {len(prompt)} characters long; the limit is "
                f"{limits.max_prompt_length}. Shorten it."
            )
        negative = (request.negative_prompt or "").strip() or None
        if negative is not None:
            if not capabilities.supports_negative_prompt:
                raise ValidationError("This backend does not support negative_prompt.")
            if len(negative) > limits.max_prompt_length:
                raise ValidationError(
                    f"negative_prompt is {len(negative)} characters long; the limit is "
                    f"{limits.max_prompt_length}."
                )
        low = max(limits.min_side, capabilities.min_side)
        high = min(limits.max_side, capabilities.max_side)
        multiple = math.lcm(limits.side_multiple, capabilities.side_multiple)
        for side, value in (("width", request.width), ("height", request.height)):
            if not low <= value <= high:
                raise ValidationError(
                    f"{side} {value} is out of range: use {low} to {high} pixels."
                )
            if value % multiple:
                below = value - value % multiple
                raise ValidationError(
                    f"{side} {value} is not a multiple of {multiple}: "
                    f"use {max(below, low)} or {min(below + multiple, high)}."
                )
        max_pixels = min(limits.max_pixels, capabilities.max_pixels)
        if request.width * request.height > max_pixels:
            raise ValidationError(
                f"{request.width}x{request.height} is {request.width * request.height} "
                f"pixels; the limit is {max_pixels} (e.g. "
                f"{math.isqrt(max_pixels) // multiple * multiple} squared)."
            )
        max_images = min(limits.max_images, capabilities.max_images)
        if not 1 <= request.num_images <= max_images:
            raise ValidationError(
                f"num_images {request.num_images} is out of range: "
                f"use 1 to {max_images}."
            )
        if request.steps is not None and not 1 <= request.steps <= limits.max_steps:
            raise ValidationError(
                f"steps {request.steps} is out of range: use 1 to {limits.max_steps}."
            )
        if request.guidance_scale is not None and not 0 <= request.guidance_scale <= 50:
            raise ValidationError(
                f"guidance_scale {request.guidance_scale} is out of range: use 0 to 50."
            )
        seed = request.seed
        if seed is None:
            seed = secrets.randbelow(2**32)
        elif not 0 <= seed < 2**32:
            raise ValidationError(f"seed {seed} is out of range: use 0 to 4294967295.")
        steps = request.steps
        if steps is None and capabilities.supports_steps:
            # The backend's default is what runs: record it in the recipe.
            steps = capabilities.default_steps
        return request.model_copy(
            update={
                "prompt": prompt,
                "negative_prompt": negative,
                "seed": seed,
                "steps": steps,
            }
        )

    @staticmethod
    def check_output_format(output_format: str | None) -> str | None:
        """Return the format, lower-cased, or raise for an unknown one."""
        if output_format is None:
            return None
        normal = output_format.lower().strip()
        if normal == "jpg":
            normal = "jpeg"
        if normal not in OUTPUT_FORMATS:
            raise ValidationError(
                f"Unknown output_format '{output_format}': use one of "
                f"{', '.join(OUTPUT_FORMATS)}."
            )
        return normal

    # -- generation ----------------------------------------------------------

    async def generate_stored(
        self,
        request: GenerationRequest,
        progress: ProgressReporter = ignore_progress,
        *,
        backend: str | None = None,
        postprocess: Sequence[str] | None = None,
        output_format: str | None = None,
    ) -> list[StoredImage]:
        """Generate, post-process and store images; return them with their bytes.

        Args:
            request: What to generate; ``seed`` may be ``None`` (one is drawn).
            progress: Receives backend progress.
            backend: Instance name; ``None`` uses ``generation.backend``.
            postprocess: Step names; ``None`` uses ``generation.postprocess``.
            output_format: "png", "jpeg" or "webp"; ``None`` uses
                ``generation.output_format`` (unset: keep the backend's format).

        Raises:
            ValidationError: for a request outside the limits.
            BusyError: when no generation slot frees up in time.
            BackendError: when the backend fails.
            PostProcessingError, StorageError: when a later stage fails.
        """
        backend_name, engine = self.backend(backend)
        request = self.validate(request, engine.capabilities)
        fmt = self.check_output_format(
            output_format or self.settings.generation.output_format
        )
        chain = (
            self.default_chain
            if postprocess is None
            else self.resolve_chain(postprocess, key="postprocess")
        )
        async with self._slot():
            started = time.perf_counter()
            images = await engine.generate(request, progress)
            generate_ms = (time.perf_counter() - started) * 1000
        if len(images) != request.num_images:
            raise BadBackendResponseError(
                f"Backend '{backend_name}' returned {len(images)} images for a "
                f"request of {request.num_images}."
            )
        log.debug(
            "backend_finished",
            backend=backend_name,
            images=len(images),
            duration_ms=round(generate_ms, 1),
        )

        def context_for(image: GeneratedImage) -> ProcessingContext:
            return ProcessingContext(
                request=request,
                backend=backend_name,
                seed=image.seed,
                model=image.model,
                output_format=fmt,
            )

        finished = await _gather(
            [self._finish(image, chain, context_for(image)) for image in images]
        )
        records = [
            self._record(
                image,
                request,
                backend=backend_name,
                chain=chain,
                sha256=digest,
                durations=Durations(
                    generate_ms=generate_ms / len(images), postprocess_ms=ms
                ),
            )
            for image, digest, ms in finished
        ]
        blobs = [image.data for image, _, _ in finished]
        del images, finished  # the backend's and the chain's buffers can go now
        await self._save_all(records, blobs)
        await _release_after(request.width * request.height * request.num_images)
        return [
            StoredImage(record=record, data=data)
            for record, data in zip(records, blobs, strict=True)
        ]

    async def generate(
        self,
        request: GenerationRequest,
        progress: ProgressReporter = ignore_progress,
        *,
        backend: str | None = None,
        postprocess: Sequence[str] | None = None,
        output_format: str | None = None,
    ) -> list[ImageRecord]:
        """Like :meth:`generate_stored`, returning only the records."""
        stored = await self.generate_stored(
            request,
            progress,
            backend=backend,
            postprocess=postprocess,
            output_format=output_format,
        )
        return [image.record for image in stored]

    async def transform_stored(
        self,
        image_id: str,
        postprocess: Sequence[str],
        output_format: str | None = None,
    ) -> StoredImage:
        """Apply steps to a stored image and store the result as a new image.

        The source image is never changed; the new record names it in
        ``source_image_id``.
        """
        source = await self.storage.load(validate_image_id(image_id))
        fmt = self.check_output_format(output_format)
        chain = self.resolve_chain(postprocess, key="postprocess")
        if not chain and fmt is None:
            raise ValidationError(
                "Give at least one postprocess step or an output_format."
            )
        old = source.record
        request = GenerationRequest(
            prompt=old.prompt,
            negative_prompt=old.negative_prompt,
            width=old.width,
            height=old.height,
            seed=old.seed,
            steps=old.steps,
            guidance_scale=old.guidance_scale,
            model=old.model,
        )
        image = GeneratedImage(
            data=source.data,
            mime_type=old.mime_type,
            width=old.width,
            height=old.height,
            seed=old.seed,
            model=old.model,
            # Backend facts (e.g. the sampler) for steps that embed the recipe.
            parameters={
                k: v
                for k, v in old.parameters.items()
                if isinstance(v, str | int | float | bool)
            },
        )
        context = ProcessingContext(
            request=request,
            backend=old.backend,
            seed=old.seed,
            model=old.model,
            output_format=fmt,
            source_image_id=old.id,
        )
        result, digest, postprocess_ms = await self._finish(image, chain, context)
        record = self._record(
            result,
            request,
            backend=old.backend,
            chain=chain,
            sha256=digest,
            durations=Durations(postprocess_ms=postprocess_ms),
            source_image_id=old.id,
            parameters=old.parameters,
        )
        await self._save_all([record], [result.data])
        await _release_after(result.width * result.height)
        return StoredImage(record=record, data=result.data)

    async def transform(
        self,
        image_id: str,
        postprocess: Sequence[str],
        output_format: str | None = None,
    ) -> ImageRecord:
        """Like :meth:`transform_stored`, returning only the new record."""
        stored = await self.transform_stored(image_id, postprocess, output_format)
        return stored.record

    async def _finish(
        self,
        image: GeneratedImage,
        chain: Sequence[PostProcessor],
        context: ProcessingContext,
    ) -> tuple[GeneratedImage, str, float]:
        """Run the chain, then convert to the requested format if still needed.

        Returns the final image, its sha256 and the milliseconds it took. Converting
        last means a chain's own ``convert`` step (which honours the request's
        format, with its own quality) normally makes the final conversion a no-op.
        """
        async with self._processing:
            return await self._run_chain(image, chain, context)

    async def _run_chain(
        self,
        image: GeneratedImage,
        chain: Sequence[PostProcessor],
        context: ProcessingContext,
    ) -> tuple[GeneratedImage, str, float]:
        begun = time.perf_counter()
        for step in chain:
            try:
                image = await step.process(image, context)
            except MCPImageError:
                raise
            except Exception as exc:  # a buggy step must not look like a crash
                log.exception("postprocess_step_crashed", step=step.instance_name)
                raise PostProcessingError(
                    f"Post-processing step '{step.instance_name}' failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        if context.output_format is not None:
            try:
                image = await anyio.to_thread.run_sync(
                    convert_format, image, context.output_format
                )
            except ImageDecodeError as exc:
                raise PostProcessingError(
                    f"The image cannot be converted to {context.output_format}: {exc}"
                ) from None
        # Hashing a multi-megabyte image takes milliseconds: keep it off the loop.
        digest = await anyio.to_thread.run_sync(_sha256, image.data)
        return image, digest, (time.perf_counter() - begun) * 1000

    def _record(
        self,
        image: GeneratedImage,
        request: GenerationRequest,
        *,
        backend: str,
        chain: Sequence[PostProcessor],
        sha256: str,
        durations: Durations,
        source_image_id: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> ImageRecord:
        return ImageRecord(
            id=new_image_id(),
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=image.seed if image.seed is not None else request.seed,
            width=image.width,
            height=image.height,
            steps=request.steps,
            guidance_scale=request.guidance_scale,
            backend=backend,
            model=image.model or request.model,
            parameters={**(parameters or {}), **request.parameters, **image.parameters},
            postprocess=[step.instance_name for step in chain],
            source_image_id=source_image_id,
            mime_type=image.mime_type,
            byte_size=len(image.data),
            sha256=sha256,
            durations=durations,
        )

    async def _save_all(self, records: list[ImageRecord], blobs: list[bytes]) -> None:
        """Save every image concurrently; on any failure, undo the others."""

        async def save(record: ImageRecord, data: bytes) -> ImageRecord:
            begun = time.perf_counter()
            await self.storage.save(record, data)
            record.durations.save_ms = (time.perf_counter() - begun) * 1000
            return record

        results = await _gather(
            [save(r, d) for r, d in zip(records, blobs, strict=True)],
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            for saved in results:
                if isinstance(saved, ImageRecord):
                    try:
                        await self.storage.delete(saved.id)
                    except MCPImageError:
                        pass
            first = failures[0]
            if isinstance(first, MCPImageError):
                raise first
            raise StorageError(
                f"Saving the image failed: {type(first).__name__}: {first}"
            ) from first
        for record in records:
            log.info(
                "image_generated",
                image_id=record.id,
                backend=record.backend,
                model=record.model,
                width=record.width,
                height=record.height,
                seed=record.seed,
                bytes=record.byte_size,
                source_image_id=record.source_image_id,
                generate_ms=round(record.durations.generate_ms, 1),
                postprocess_ms=round(record.durations.postprocess_ms, 1),
                save_ms=round(record.durations.save_ms, 1),
                **(
                    {"prompt": record.prompt}
                    if self.settings.logging.log_prompts
                    else {}
                ),
            )
            await self._announce(record)

    async def _announce(self, record: ImageRecord) -> None:
        """Start the ``image_stored`` listeners in the background."""
        timeout = self.settings.plugins.image_stored_timeout.total_seconds()
        if self._listeners is None:  # not entered: nothing may outlive the call
            await self.plugins.image_stored(record, per_listener=timeout)
            return
        self._listeners.start_soon(
            lambda: self.plugins.image_stored(record, per_listener=timeout)
        )

    def _slot(self) -> _Slot:
        return _Slot(self)

    # -- reading -------------------------------------------------------------

    async def load(self, image_id: str) -> StoredImage:
        """Return a stored image with its record."""
        return await self.storage.load(validate_image_id(image_id))

    async def get_record(self, image_id: str) -> ImageRecord:
        """Return a stored image's record."""
        return await self.storage.get_record(validate_image_id(image_id))

    async def list_images(
        self, limit: int = 20, cursor: str | None = None
    ) -> ImagePage:
        """List stored images, newest first."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValidationError(
                f"limit {limit} is out of range: use 1 to {MAX_LIST_LIMIT}."
            )
        return await self.storage.list(limit, cursor or None)

    async def delete(self, image_id: str) -> None:
        """Delete a stored image."""
        await self.storage.delete(validate_image_id(image_id))
        log.info("image_deleted", image_id=image_id)

    async def url_for(self, image_id: str) -> str:
        """Return a link to a stored image."""
        return await self.storage.url_for(validate_image_id(image_id))

    async def describe_backends(self) -> list[BackendInfo]:
        """Describe every backend instance, checking health concurrently."""

        async def check(backend: InferenceBackend) -> Health:
            begun = time.perf_counter()
            try:
                with anyio.fail_after(HEALTH_CHECK_TIMEOUT):
                    health = await backend.check_health()
            except TimeoutError:
                health = Health(status="unavailable", detail="health check timed out")
            except MCPImageError as exc:
                health = Health(status="unavailable", detail=str(exc))
            except Exception as exc:
                # A buggy health check must not fail list_backends for every backend.
                # Its message stays in the log: an unexpected error may carry
                # internals (URLs, credentials) the client must not see.
                log.exception("health_check_crashed", backend=backend.instance_name)
                health = Health(
                    status="unavailable",
                    detail=f"health check failed unexpectedly ({type(exc).__name__}); "
                    "the server log has the details",
                )
            if health.latency_ms is None:
                health = health.model_copy(
                    update={
                        "latency_ms": round((time.perf_counter() - begun) * 1000, 1)
                    }
                )
            return health

        healths = await _gather([check(b) for b in self.backends.values()])
        default = self.settings.generation.backend
        return [
            BackendInfo(
                name=name,
                type=backend.name,
                default=name == default,
                capabilities=backend.capabilities,
                health=health,
            )
            for (name, backend), health in zip(
                self.backends.items(), healths, strict=True
            )
        ]


def _build_named(
    settings: Settings,
    plugins: PluginManager,
    kind: Kind,
    section: str,
    name: str,
    raw: Mapping[str, Any],
) -> Component:
    """Build the component of table ``[<section>.<name>]``.

    Its ``type`` key names the component type and defaults to ``name``; the other
    keys are validated by that type's ``Settings``.
    """
    table = dict(raw)
    type_name = str(table.pop("type", name))
    type_key = f"{section}.{name}.type"
    component_cls = plugins.component_type(
        kind, type_name, key=type_key, source=settings.source_of(type_key)
    )
    options = validate_component_table(
        settings, component_cls.Settings, table, f"{section}.{name}"
    )
    return component_cls(options, instance_name=name)


async def _release_after(pixels: int) -> None:
    """After a large request, hand the memory its buffers used back to the system.

    Decoded images of a large request take tens of megabytes that glibc would
    otherwise keep (see :mod:`mcp_imagegen._memory`); small requests skip the
    few-millisecond trim.
    """
    if pixels >= RELEASE_AFTER_PIXELS:
        await anyio.to_thread.run_sync(release_free_memory)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Slot:
    """One of ``server.max_concurrent_generations`` slots, with a bounded wait."""

    def __init__(self, service: ImageService) -> None:
        self.service = service

    async def __aenter__(self) -> None:
        service = self.service
        server = service.settings.server
        try:
            # A free slot is taken at once: such a request never counts as
            # waiting, so it cannot make a concurrent one look over the queue limit.
            service._slots.acquire_nowait()
            return
        except anyio.WouldBlock:
            pass
        if service._waiting >= server.max_queued_generations:
            raise BusyError(
                f"The server is busy: {server.max_concurrent_generations} generations "
                f"running and {service._waiting} waiting. Try again shortly."
            )
        service._waiting += 1
        try:
            with anyio.fail_after(server.queue_timeout.total_seconds()):
                await service._slots.acquire()
        except TimeoutError:
            raise BusyError(
                "The server is busy: no generation slot became free within "
                f"{server.queue_timeout.total_seconds():g} s. Try again shortly."
            ) from None
        finally:
            service._waiting -= 1

    async def __aexit__(self, *exc_info: object) -> None:
        self.service._slots.release()


async def _gather(
    awaitables: Sequence[Any], *, return_exceptions: bool = False
) -> list[Any]:
    """Run awaitables concurrently in an anyio task group; keep their order."""
    results: list[Any] = [None] * len(awaitables)

    async def run(index: int, awaitable: Any) -> None:
        try:
            results[index] = await awaitable
        except Exception as exc:
            if not return_exceptions:
                raise
            results[index] = exc

    try:
        async with anyio.create_task_group() as group:
            for index, awaitable in enumerate(awaitables):
                group.start_soon(run, index, awaitable)
    except BaseExceptionGroup as group_error:
        # Re-raise the first real error, not the group, so callers see our types.
        first = group_error.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return results
