"""Saving: records for finished images, all-or-nothing saves, the success log."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from mcp_imagegen._concurrency import gather
from mcp_imagegen._ids import new_image_id
from mcp_imagegen._service.events import StoredEvents
from mcp_imagegen._service.observer import NULL_OBSERVER, ServiceObserver
from mcp_imagegen.errors import MCPImageError, StorageError
from mcp_imagegen.interfaces import ImageStorage, PostProcessor
from mcp_imagegen.models import (
    Durations,
    GeneratedImage,
    GenerationRequest,
    ImageRecord,
)

if TYPE_CHECKING:
    from mcp_imagegen._config import LoggingSettings

log = structlog.get_logger("mcp_imagegen._service")


def build_record(
    image: GeneratedImage,
    request: GenerationRequest,
    *,
    backend: str,
    chain: Sequence[PostProcessor],
    sha256: str,
    durations: Durations,
    source_image_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    origin: str | None = None,
) -> ImageRecord:
    """The record of a finished image, with a new id.

    ``parameters`` (a source image's) are overridden by the request's, and those
    by the image's own.
    """
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
        style=request.style,
        mime_type=image.mime_type,
        byte_size=len(image.data),
        sha256=sha256,
        durations=durations,
        origin=origin,
    )


class Saver:
    """Saves images all-or-nothing, logs them and announces them.

    Args:
        storage: Where images go.
        events: Announces each saved image.
        logging: The ``[logging]`` section (``log_prompts``: whether the success
            log line carries the prompt).
        observer: Told about each image stored.
    """

    def __init__(
        self,
        storage: ImageStorage,
        events: StoredEvents,
        logging: LoggingSettings,
        observer: ServiceObserver = NULL_OBSERVER,
    ) -> None:
        self.storage = storage
        self.events = events
        self.logging = logging
        self.observer = observer

    async def save_all(self, records: list[ImageRecord], blobs: list[bytes]) -> None:
        """Save every image concurrently; on any failure, undo the others.

        Raises:
            StorageError: (or the storage's own typed error) when a save fails.
        """
        results = await gather(
            [
                functools.partial(self._save, r, d)
                for r, d in zip(records, blobs, strict=True)
            ],
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self._undo([r for r in results if isinstance(r, ImageRecord)])
            first = failures[0]
            if isinstance(first, MCPImageError):
                raise first
            raise StorageError(
                f"Saving the image failed: {type(first).__name__}: {first}"
            ) from first
        for record in records:
            self._log(record)
            self.observer.image_stored(record.backend)
            await self.events.announce(record)

    async def _save(self, record: ImageRecord, data: bytes) -> ImageRecord:
        begun = time.perf_counter()
        await self.storage.save(record, data)
        record.durations.save_ms = (time.perf_counter() - begun) * 1000
        return record

    async def _undo(self, saved: list[ImageRecord]) -> None:
        for record in saved:
            with contextlib.suppress(MCPImageError):
                await self.storage.delete(record.id)

    def _log(self, record: ImageRecord) -> None:
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
            origin=record.origin,
            generate_ms=round(record.durations.generate_ms, 1),
            postprocess_ms=round(record.durations.postprocess_ms, 1),
            save_ms=round(record.durations.save_ms, 1),
            **({"prompt": record.prompt} if self.logging.log_prompts else {}),
        )
