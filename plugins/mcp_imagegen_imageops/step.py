"""The base class of every imageops step: worker thread, timing and error wrapping."""

from __future__ import annotations

import abc
import time

import anyio.to_thread
import structlog

from mcp_imagegen import (
    GeneratedImage,
    PostProcessingError,
    PostProcessor,
    ProcessingContext,
)
from mcp_imagegen.imaging import FormatSizeError, ImageDecodeError
from mcp_imagegen_imageops.containers import ContainerError

log = structlog.get_logger(__name__)


class ImageOpsStep(PostProcessor, abc.ABC):
    """A post-processing step whose work is synchronous Pillow/byte code.

    Subclasses implement :meth:`apply`; :meth:`process` runs it in a worker thread
    so the event loop keeps serving progress, cancellation and other requests
    (or on the loop when :meth:`runs_inline` says the input is small enough), and
    turns decoding or encoding failures into a :class:`PostProcessingError` that
    names the step.
    """

    async def process(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Run :meth:`apply` in a worker thread and return its result.

        Raises:
            PostProcessingError: if the input cannot be decoded or the step fails;
                the message names the step and its type.
        """
        started = time.perf_counter()
        try:
            if self.runs_inline(image):
                result = self.apply(image, context)
            else:
                result = await anyio.to_thread.run_sync(self.apply, image, context)
        except PostProcessingError:
            raise
        except FormatSizeError as exc:
            # The request asked for more than the format can hold: the caller's
            # choice to change, so it stays a validation error, naming the step.
            raise FormatSizeError(f"{self.describe()}: {exc}") from None
        except ImageDecodeError as exc:
            raise PostProcessingError(
                f"{self.describe()} cannot decode its input image "
                f"({image.mime_type}, {len(image.data)} bytes): {exc}"
            ) from None
        except ContainerError as exc:
            raise PostProcessingError(
                f"{self.describe()} cannot read the structure of its input image "
                f"({image.mime_type}, {len(image.data)} bytes): {exc}"
            ) from None
        except (OSError, ValueError) as exc:
            # Pillow reports encoder problems (unsupported mode, oversized block)
            # as OSError/ValueError; the user needs the step, not a traceback.
            raise PostProcessingError(
                f"{self.describe()} failed on a {image.width}x{image.height} "
                f"{image.mime_type} image: {type(exc).__name__}: {exc}"
            ) from None
        log.debug(
            "postprocess_step_done",
            step=self.instance_name,
            type=self.name,
            mime_type=result.mime_type,
            width=result.width,
            height=result.height,
            byte_size=len(result.data),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return result

    def runs_inline(self, image: GeneratedImage) -> bool:
        """Whether :meth:`apply` is cheap enough on ``image`` to run on the loop.

        A worker-thread call costs the event loop a submit, a wake-up and a
        result callback; under load (64 clients) those hops are a large share
        of the loop's time. A step whose work on a small input is bounded well
        below that, whatever the input holds, may say so; the default is never.
        """
        return False

    def describe(self) -> str:
        """Name the step for messages: ``step 'web' (convert)``."""
        if self.instance_name == self.name:
            return f"Post-processing step '{self.name}'"
        return f"Post-processing step '{self.instance_name}' ({self.name})"

    @abc.abstractmethod
    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Transform ``image``; synchronous, called in a worker thread.

        Must return a new :class:`GeneratedImage` whose ``mime_type``, ``width`` and
        ``height`` describe the returned bytes (or ``image`` itself if unchanged).
        """
