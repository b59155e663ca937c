"""ImageService: the facade the MCP layer and the CLI call.

It holds the built components and delegates each request to the part that owns
it: :mod:`.validation`, :mod:`.admission`, :mod:`.pipeline` (with
:mod:`.finishing` and :mod:`.saving`), :mod:`.retention`, :mod:`.health` and
:mod:`.events`. It knows components only by their interfaces, and neither loads
configuration nor plugins: ``mcp_imagegen._app`` (the composition root) builds
it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Self, Unpack

import anyio
import anyio.abc
import structlog

from mcp_imagegen._ids import validate_image_id
from mcp_imagegen._service.admission import Admission
from mcp_imagegen._service.editing import DEFAULT_STRENGTH, Editor
from mcp_imagegen._service.events import (
    Announcer,
    StoredEvents,
    announce_to_nobody,
    cancellation_only,
)
from mcp_imagegen._service.health import BackendInfo, describe_backends
from mcp_imagegen._service.inputs import InputReader
from mcp_imagegen._service.observer import NULL_OBSERVER, ServiceObserver
from mcp_imagegen._service.pipeline import Pipeline
from mcp_imagegen._service.retention import Retention
from mcp_imagegen._service.saving import Saver
from mcp_imagegen._service.validation import check_output_format, validate_request
from mcp_imagegen._styles import CallArguments, StyledArguments, apply_style
from mcp_imagegen.errors import ValidationError
from mcp_imagegen.interfaces import (
    Component,
    ImageServiceAPI,
    ImageStorage,
    InferenceBackend,
    PostProcessor,
)
from mcp_imagegen.models import (
    Capabilities,
    GenerationRequest,
    ImagePage,
    ImageRecord,
    ProgressReporter,
    StoredImage,
    Style,
    ignore_progress,
)

if TYPE_CHECKING:
    from mcp_imagegen._config import Settings

log = structlog.get_logger("mcp_imagegen._service")

MAX_LIST_LIMIT = 100


class ImageService(ImageServiceAPI):
    """Generates, post-processes, stores and serves images.

    It subclasses :class:`~mcp_imagegen.interfaces.ImageServiceAPI` explicitly,
    so that mypy checks it keeps the public interface plugins are given.

    Build it with ``mcp_imagegen._app.build_service``, then use it as an async
    context manager: entering starts every component and the retention task,
    leaving stops them.

    Args:
        settings: The whole configuration.
        backends: Backend instances by configured name.
        storage: The storage.
        steps: Post-processing steps by configured name.
        announcer: Announces each stored image to the ``image_stored`` listeners.
        observer: Told about backend requests, stored images and busy
            rejections (metrics); the default ignores them.
        styles: The enabled styles by name (checked by ``_styles.build_styles``).

    Raises:
        ConfigurationError: when ``generation.postprocess`` names an unknown step.
    """

    def __init__(
        self,
        settings: Settings,
        backends: dict[str, InferenceBackend],
        storage: ImageStorage,
        steps: dict[str, PostProcessor],
        announcer: Announcer = announce_to_nobody,
        observer: ServiceObserver = NULL_OBSERVER,
        styles: Mapping[str, Style] | None = None,
    ) -> None:
        self.settings = settings
        self.styles = dict(styles or {})
        self.observer = observer
        self.backends = backends
        self.storage = storage
        self.steps = steps
        self.events = StoredEvents(announcer)
        self.retention = Retention(storage, settings.storage)
        self.pipeline = Pipeline(
            settings,
            backends,
            storage,
            steps,
            Admission(settings.server, observer),
            Saver(storage, self.events, settings.logging, observer),
            observer,
        )
        self.editor = Editor(
            settings, self.pipeline, InputReader(settings.inputs, storage)
        )
        #: The retention task's group, while the service runs.
        self._retention: anyio.abc.TaskGroup | None = None
        self._started: list[Component] = []

    @property
    def default_chain(self) -> list[PostProcessor]:
        """The steps of ``generation.postprocess``."""
        return self.pipeline.default_chain

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
            await self.events.__aenter__()
            group = anyio.create_task_group()
            await group.__aenter__()
            # Always: even without max_age, leftovers of interrupted saves are swept.
            group.start_soon(self.retention.run)
            self._retention = group
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
            if self._retention is not None:
                group, self._retention = self._retention, None
                group.cancel_scope.cancel()
                try:
                    await group.__aexit__(*cancellation_only(exc_type, exc, tb))
                finally:
                    await self.events.__aexit__(exc_type, exc, tb)
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

    async def remove_orphans(self) -> int:
        """Remove leftovers of interrupted saves older than ``storage.orphan_grace``."""
        return await self.retention.remove_orphans()

    async def delete_expired(self) -> int:
        """Delete images older than ``storage.max_age``; return how many."""
        return await self.retention.delete_expired()

    # -- validation ----------------------------------------------------------

    def backend(self, name: str | None) -> tuple[str, InferenceBackend]:
        """Return ``(instance name, backend)``; ``None`` means the default."""
        return self.pipeline.backend(name)

    def resolve_chain(self, names: Sequence[str], *, key: str) -> list[PostProcessor]:
        """Map step names to post-processor instances."""
        return self.pipeline.resolve_chain(names, key=key)

    def validate(
        self, request: GenerationRequest, capabilities: Capabilities
    ) -> GenerationRequest:
        """Check a request against the limits and the backend; draw a seed if none."""
        return validate_request(request, capabilities, self.settings.limits)

    check_output_format = staticmethod(check_output_format)

    def apply_style(
        self, name: str | None, /, **arguments: Unpack[CallArguments]
    ) -> StyledArguments:
        """Apply style ``name`` to a call's arguments (see ``_styles.apply_style``).

        Raises:
            ValidationError: for an unknown style (listing the known ones) or,
                when the style adds a negative prompt, an unknown backend.
        """
        return apply_style(
            self.styles,
            name,
            supports_negative_prompt=self._supports_negative_prompt,
            **arguments,
        )

    def _supports_negative_prompt(self, backend: str | None) -> bool:
        return self.backend(backend)[1].capabilities.supports_negative_prompt

    # -- generation ----------------------------------------------------------

    async def generate(
        self,
        request: GenerationRequest,
        progress: ProgressReporter = ignore_progress,
        *,
        backend: str | None = None,
        postprocess: Sequence[str] | None = None,
        output_format: str | None = None,
    ) -> list[StoredImage]:
        """Generate, post-process and store images; return them with their bytes.

        Arguments and result as :meth:`ImageServiceAPI.generate`.

        Raises:
            ValidationError: for a request outside the limits.
            BusyError: when no generation slot frees up in time.
            BackendError: when the backend fails.
            PostProcessingError, StorageError: when a later stage fails.
        """
        return await self.pipeline.generate(
            request,
            progress,
            backend=backend,
            postprocess=postprocess,
            output_format=output_format,
        )

    async def transform(
        self,
        image_id: str,
        postprocess: Sequence[str],
        output_format: str | None = None,
    ) -> StoredImage:
        """Apply steps to a stored image; store the result as a new image.

        As :meth:`ImageServiceAPI.transform`: the source is never changed.
        """
        return await self.pipeline.transform(image_id, postprocess, output_format)

    async def edit(
        self,
        image: str,
        prompt: str,
        *,
        mask: str | None = None,
        strength: float = DEFAULT_STRENGTH,
        negative_prompt: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        backend: str | None = None,
        postprocess: Sequence[str] | None = None,
        output_format: str | None = None,
        progress: ProgressReporter = ignore_progress,
        style: str | None = None,
    ) -> StoredImage:
        """Edit an image (image-to-image; inpainting with a mask); store the result.

        Arguments and result as :meth:`ImageServiceAPI.edit`.

        Raises:
            ValidationError: for a bad input, mask, strength or size, or a
                backend without ``image_input`` (``mask``).
            BusyError, BackendError, PostProcessingError, StorageError: as
                :meth:`generate`.
        """
        return await self.editor.edit(
            image,
            prompt,
            mask=mask,
            strength=strength,
            negative_prompt=negative_prompt,
            seed=seed,
            steps=steps,
            guidance_scale=guidance_scale,
            width=width,
            height=height,
            backend=backend,
            postprocess=postprocess,
            output_format=output_format,
            progress=progress,
            style=style,
        )

    async def ingest(
        self,
        *,
        data: str | None = None,
        url: str | None = None,
        path: str | None = None,
    ) -> StoredImage:
        """Store an outside image as it is; as :meth:`ImageServiceAPI.ingest`."""
        return await self.editor.ingest(data=data, url=url, path=path)

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
        return await describe_backends(self.backends, self.settings.generation.backend)
