"""The pipeline: validate → slot → backend → post-processing → save → announce."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from mcp_imagegen._concurrency import gather
from mcp_imagegen._ids import validate_image_id
from mcp_imagegen._memory import release_free_memory
from mcp_imagegen._service.admission import Admission
from mcp_imagegen._service.finishing import Finisher
from mcp_imagegen._service.observer import (
    NULL_OBSERVER,
    OUTCOME_OK,
    ServiceObserver,
    outcome_of,
)
from mcp_imagegen._service.saving import Saver, build_record
from mcp_imagegen._service.validation import (
    check_output_format,
    resolve_chain,
    validate_request,
)
from mcp_imagegen.errors import BadBackendResponseError, ValidationError
from mcp_imagegen.interfaces import ImageStorage, InferenceBackend, PostProcessor
from mcp_imagegen.models import (
    Durations,
    GeneratedImage,
    GenerationRequest,
    ProcessingContext,
    ProgressReporter,
    StoredImage,
    ignore_progress,
)

if TYPE_CHECKING:
    from mcp_imagegen._config import Settings

log = structlog.get_logger("mcp_imagegen._service")

#: Requests decoding at least this many pixels in all trim the heap afterwards.
RELEASE_AFTER_PIXELS = 1024 * 1024


class Pipeline:
    """Generates and transforms images, and stores the results.

    Args:
        settings: The whole configuration (``generation``, ``limits``; keys are
            named with their source in configuration errors).
        backends: Backend instances by configured name.
        storage: Where images go.
        steps: Post-processing steps by configured name.
        admission: The generation slots.
        saver: Saves, logs and announces finished images.
        observer: Told how each backend request ended.

    Raises:
        ConfigurationError: when ``generation.postprocess`` names an unknown step.
    """

    def __init__(
        self,
        settings: Settings,
        backends: Mapping[str, InferenceBackend],
        storage: ImageStorage,
        steps: Mapping[str, PostProcessor],
        admission: Admission,
        saver: Saver,
        observer: ServiceObserver = NULL_OBSERVER,
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.storage = storage
        self.steps = steps
        self.admission = admission
        self.saver = saver
        self.observer = observer
        self.finisher = Finisher()
        self.default_chain = self.resolve_chain(
            settings.generation.postprocess, key="generation.postprocess"
        )

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
        """Map step names to the configured steps (see :func:`resolve_chain`)."""
        return resolve_chain(
            self.steps, names, key=key, source_of=self.settings.source_of
        )

    def finishing(
        self, postprocess: Sequence[str] | None, output_format: str | None
    ) -> tuple[list[PostProcessor], str | None]:
        """The chain and output format a new image gets: the call's, else the
        configured defaults (``generation.postprocess``, ``.output_format``).

        Raises:
            ValidationError: for an unknown format or step (format first).
        """
        fmt = check_output_format(
            output_format or self.settings.generation.output_format
        )
        chain = (
            self.default_chain
            if postprocess is None
            else self.resolve_chain(postprocess, key="postprocess")
        )
        return chain, fmt

    async def generate(
        self,
        request: GenerationRequest,
        progress: ProgressReporter = ignore_progress,
        *,
        backend: str | None = None,
        postprocess: Sequence[str] | None = None,
        output_format: str | None = None,
    ) -> list[StoredImage]:
        """Generate, post-process and store images (see ``ImageService``)."""
        backend_name, engine = self.backend(backend)
        request = validate_request(request, engine.capabilities, self.settings.limits)
        chain, fmt = self.finishing(postprocess, output_format)
        images, generate_ms = await self._run_backend(
            backend_name, engine, request, progress
        )
        stored = await self._finish_and_save(
            images, generate_ms, request, backend_name, chain, fmt
        )
        await _release_after(request.width * request.height * request.num_images)
        return stored

    async def _finish_and_save(
        self,
        images: list[GeneratedImage],
        generate_ms: float,
        request: GenerationRequest,
        backend_name: str,
        chain: Sequence[PostProcessor],
        fmt: str | None,
        *,
        source_image_id: str | None = None,
        origin: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> list[StoredImage]:
        """Post-process every image concurrently, then save them all.

        ``source_image_id`` / ``origin`` name an edit's input (lineage);
        ``parameters`` are recorded under the request's and the image's own.
        """
        finished = await gather(
            [
                functools.partial(
                    self.finisher.finish,
                    image,
                    chain,
                    ProcessingContext(
                        request=request,
                        backend=backend_name,
                        seed=image.seed,
                        model=image.model,
                        output_format=fmt,
                        source_image_id=source_image_id,
                        origin=origin,
                    ),
                )
                for image in images
            ]
        )
        records = [
            build_record(
                image,
                request,
                backend=backend_name,
                chain=chain,
                sha256=digest,
                durations=Durations(
                    generate_ms=generate_ms / len(images), postprocess_ms=ms
                ),
                source_image_id=source_image_id,
                parameters=parameters,
                origin=origin,
            )
            for image, digest, ms in finished
        ]
        blobs = [image.data for image, _, _ in finished]
        images.clear()  # the backend's and the chain's buffers can go now
        del finished
        await self.saver.save_all(records, blobs)
        return [
            StoredImage(record=record, data=data)
            for record, data in zip(records, blobs, strict=True)
        ]

    async def _run_backend(
        self,
        name: str,
        engine: InferenceBackend,
        request: GenerationRequest,
        progress: ProgressReporter,
    ) -> tuple[list[GeneratedImage], float]:
        """Generate in a slot; return the images and the milliseconds it took."""
        observer = self.observer
        async with self.admission.slot():
            started = time.perf_counter()
            try:
                images = await engine.generate(request, progress)
            except BaseException as exc:
                # Cancellation too: a drained or abandoned call is worth counting.
                seconds = time.perf_counter() - started
                observer.backend_request(name, outcome_of(exc), seconds)
                raise
            generate_ms = (time.perf_counter() - started) * 1000
        if len(images) != request.num_images:
            error = BadBackendResponseError(
                f"Backend '{name}' returned {len(images)} images for a "
                f"request of {request.num_images}."
            )
            observer.backend_request(name, outcome_of(error), generate_ms / 1000)
            raise error
        observer.backend_request(name, OUTCOME_OK, generate_ms / 1000)
        log.debug(
            "backend_finished",
            backend=name,
            images=len(images),
            duration_ms=round(generate_ms, 1),
        )
        return images, generate_ms

    async def transform(
        self,
        image_id: str,
        postprocess: Sequence[str],
        output_format: str | None = None,
    ) -> StoredImage:
        """Apply steps to a stored image; store the result as a new image."""
        source = await self.storage.load(validate_image_id(image_id))
        fmt = check_output_format(output_format)
        chain = self.resolve_chain(postprocess, key="postprocess")
        if not chain and fmt is None:
            raise ValidationError(
                "Give at least one postprocess step or an output_format."
            )
        old = source.record
        request, image = _recipe_of(source)
        context = ProcessingContext(
            request=request,
            backend=old.backend,
            seed=old.seed,
            model=old.model,
            output_format=fmt,
            source_image_id=old.id,
        )
        result, digest, postprocess_ms = await self.finisher.finish(
            image, chain, context
        )
        record = build_record(
            result,
            request,
            backend=old.backend,
            chain=chain,
            sha256=digest,
            durations=Durations(postprocess_ms=postprocess_ms),
            source_image_id=old.id,
            parameters=old.parameters,
        )
        await self.saver.save_all([record], [result.data])
        await _release_after(result.width * result.height)
        return StoredImage(record=record, data=result.data)


def _recipe_of(source: StoredImage) -> tuple[GenerationRequest, GeneratedImage]:
    """The request that made a stored image, and the image as a backend result."""
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
        style=old.style,
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
    return request, image


async def _release_after(pixels: int) -> None:
    """After a large request, hand the memory its buffers used back to the system.

    Decoded images of a large request take tens of megabytes that glibc would
    otherwise keep (see :mod:`mcp_imagegen._memory`); small requests skip the
    few-millisecond trim.
    """
    if pixels >= RELEASE_AFTER_PIXELS:
        await anyio.to_thread.run_sync(release_free_memory)
