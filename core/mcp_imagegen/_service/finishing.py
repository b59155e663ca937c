"""Finishing: the post-processing chain, the final format conversion, the hash."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence

import anyio
import structlog

from mcp_imagegen.errors import MCPImageError, PostProcessingError
from mcp_imagegen.imaging import ImageDecodeError, convert_format
from mcp_imagegen.interfaces import PostProcessor
from mcp_imagegen.models import GeneratedImage, ProcessingContext

log = structlog.get_logger("mcp_imagegen._service")

#: Images up to this size are hashed on the event loop (~0.15 ms at most).
INLINE_HASH_BYTES = 256 * 1024


class Finisher:
    """Runs post-processing chains, at most one per core at a time.

    Post-processing decodes whole images (12 MB each at 2048²) in worker threads;
    more at once than there are cores is no faster, only bigger.
    """

    def __init__(self) -> None:
        self._processing = anyio.Semaphore(max(1, os.cpu_count() or 1))

    async def finish(
        self,
        image: GeneratedImage,
        chain: Sequence[PostProcessor],
        context: ProcessingContext,
    ) -> tuple[GeneratedImage, str, float]:
        """Run the chain, then convert to the requested format if still needed.

        Converting last means a chain's own ``convert`` step (which honours the
        request's format, with its own quality) normally makes the final
        conversion a no-op.

        Returns:
            The final image, its sha256 and the milliseconds it took.

        Raises:
            PostProcessingError: when a step or the conversion fails.
        """
        async with self._processing:
            begun = time.perf_counter()
            image = await _run_chain(image, chain, context)
            if context.output_format is not None:
                image = await _convert(image, context.output_format)
            # Hashing a multi-megabyte image takes milliseconds: keep it off the
            # loop. A small one (a 512² placeholder PNG: 28 KB, 0.02 ms) costs
            # less than the worker-thread call would (~0.07 ms, more under load).
            if len(image.data) <= INLINE_HASH_BYTES:
                digest = _sha256(image.data)
            else:
                digest = await anyio.to_thread.run_sync(_sha256, image.data)
            return image, digest, (time.perf_counter() - begun) * 1000


async def _run_chain(
    image: GeneratedImage, chain: Sequence[PostProcessor], context: ProcessingContext
) -> GeneratedImage:
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
    return image


async def _convert(image: GeneratedImage, output_format: str) -> GeneratedImage:
    try:
        return await anyio.to_thread.run_sync(convert_format, image, output_format)
    except ImageDecodeError as exc:
        raise PostProcessingError(
            f"The image cannot be converted to {output_format}: {exc}"
        ) from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
