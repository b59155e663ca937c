"""The three component interfaces plugins implement, and the service they may call.

A component *type* is a class with a ``name``, a pydantic ``Settings`` model (its
TOML table, validated with ``extra="forbid"``) and an async lifecycle. The core
creates one instance per configured table, calls :meth:`Component.start` before the
server accepts requests and :meth:`Component.aclose` at shutdown.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict

from mcp_imagegen.models import (
    Capabilities,
    GeneratedImage,
    GenerationRequest,
    Health,
    ImagePage,
    ImageRecord,
    ProcessingContext,
    ProgressReporter,
    StoredImage,
    TaskPage,
    TaskRecord,
    ignore_progress,
)


class ComponentSettings(BaseModel):
    """Base class of every component's settings: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class Component:
    """Lifecycle shared by backends, storages and post-processors.

    Subclasses set ``name`` (the type name used in configuration) and ``Settings``.
    The constructor must not do I/O; open connections in :meth:`start`.

    Attributes:
        instance_name: The configured name of this instance (``[backends.<name>]``);
            equal to the type name when the table is named after the type.
        settings: The validated settings.
    """

    name: ClassVar[str]
    Settings: ClassVar[type[ComponentSettings]] = ComponentSettings

    def __init__(self, settings: ComponentSettings, *, instance_name: str = "") -> None:
        self.settings = settings
        self.instance_name = instance_name or self.name

    async def start(self) -> None:
        """Open connections and check the configuration against the real world.

        Raise :class:`~mcp_imagegen.errors.ConfigurationError` (or the component's
        own error type) with a clear message if the component cannot work.
        """

    async def check(self) -> None:
        """Check the configuration against the real world without starting.

        ``mcp-imagegen config`` calls this on every configured component, without
        :meth:`start`, to validate fully: files named by settings exist and load,
        directories are (or can be made) writable. It must not create, change or
        connect to anything. The default checks nothing.

        Raises:
            ConfigurationError: naming the setting and what is wrong with it.
        """

    async def aclose(self) -> None:
        """Release every resource opened by :meth:`start`. Must be idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class InferenceBackend(Component, abc.ABC):
    """Turns a :class:`GenerationRequest` into encoded images."""

    @property
    def capabilities(self) -> Capabilities:
        """Limits and features of this instance; requests are checked against them."""
        return Capabilities()

    @abc.abstractmethod
    async def generate(
        self, request: GenerationRequest, progress: ProgressReporter
    ) -> list[GeneratedImage]:
        """Generate ``request.num_images`` images.

        Image ``i`` must use seed ``request.seed_for(i)`` when the backend supports
        seeds. Report progress through ``progress`` as work advances. Cancellation
        arrives as a cancelled task: stop the work (close the HTTP request, etc.).

        Raises:
            BackendError: or a subclass, with a message naming the instance.
        """

    async def check_health(self) -> Health:
        """Report whether the backend can serve requests now."""
        return Health(status="ok")


class ImageStorage(Component, abc.ABC):
    """Keeps images and their metadata records.

    Ids passed in are already validated by the caller, but implementations must
    validate them again (with :func:`mcp_imagegen.validate_image_id`) before using
    them in a path or key. The contract suite in :mod:`mcp_imagegen.testing` pins the
    behaviour every storage must have.
    """

    @abc.abstractmethod
    async def save(self, record: ImageRecord, data: bytes) -> None:
        """Store ``data`` and ``record`` under ``record.id``, atomically.

        A reader never sees a partial image: either the whole image and its record
        are visible, or neither is.
        """

    @abc.abstractmethod
    async def load(self, image_id: str) -> StoredImage:
        """Return the image and its record.

        Raises:
            ImageNotFoundError: if no image has this id.
        """

    @abc.abstractmethod
    async def get_record(self, image_id: str) -> ImageRecord:
        """Return only the metadata record of an image.

        Raises:
            ImageNotFoundError: if no image has this id.
        """

    @abc.abstractmethod
    async def list(self, limit: int = 20, cursor: str | None = None) -> ImagePage:
        """Return up to ``limit`` records, newest first, after ``cursor``.

        Raises:
            ValidationError: if ``cursor`` is not one this storage returned.
        """

    @abc.abstractmethod
    async def delete(self, image_id: str) -> None:
        """Delete an image and its record.

        Raises:
            ImageNotFoundError: if no image has this id.
        """

    @abc.abstractmethod
    async def delete_expired(self, older_than: datetime) -> int:
        """Delete every image created before ``older_than``; return how many."""

    async def remove_orphans(self, older_than: datetime) -> int:
        """Remove leftovers of interrupted saves last changed before ``older_than``.

        A crash or an outage during :meth:`save` can leave a temporary file or an
        image object without its record. The retention task calls this every
        ``storage.cleanup_interval`` with a cut-off ``storage.orphan_grace`` in the
        past, so saves in progress are never touched. Return how many leftovers
        were removed. The default does nothing (a storage whose saves leave nothing
        behind needs no sweep).
        """
        return 0

    @abc.abstractmethod
    async def url_for(self, image_id: str) -> str:
        """Return a URL a user can open to get the image (file://, https://, ...)."""

    def local_path(self, image_id: str) -> Path | None:
        """Return the image's path on this machine, if the storage has one."""
        return None

    def task_store(self) -> TaskStore | None:
        """Return a :class:`TaskStore` kept beside the images, if this storage has one.

        Called after :meth:`start`. HTTP deployments keep MCP task records here so
        that every replica sharing the storage can answer for every task. The
        default (``None``) leaves tasks in memory.
        """
        return None


class TaskStore(abc.ABC):
    """Keeps MCP task records where every replica can read them.

    Ids passed in are validated by the caller; implementations must still check
    them with :func:`mcp_imagegen.validate_task_id` before using an id in a path
    or key. The contract suite ``mcp_imagegen.testing.TaskStoreContract`` pins
    the behaviour.
    """

    @abc.abstractmethod
    async def put(self, record: TaskRecord) -> None:
        """Create or replace the record of ``record.task_id``, atomically."""

    @abc.abstractmethod
    async def get(self, task_id: str) -> TaskRecord | None:
        """Return the task's record, or ``None`` if there is none (or it expired)."""

    @abc.abstractmethod
    async def list(
        self, owner: str | None, limit: int = 50, cursor: str | None = None
    ) -> TaskPage:
        """Return ``owner``'s tasks, newest first, after ``cursor``.

        Raises:
            ValidationError: if ``cursor`` is not one this store returned.
        """

    @abc.abstractmethod
    async def delete(self, task_id: str) -> None:
        """Forget a task (and its cancel request); no error if it is absent."""

    @abc.abstractmethod
    async def request_cancel(self, task_id: str) -> None:
        """Record that the task's cancellation was asked for (any replica may ask)."""

    @abc.abstractmethod
    async def cancel_requested(self, task_id: str) -> bool:
        """Return whether :meth:`request_cancel` was called for this task."""

    @abc.abstractmethod
    async def delete_expired(self, now: datetime) -> int:
        """Delete every task whose ``created_at + ttl`` is before ``now``.

        Returns:
            How many tasks were deleted.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, default no-op
        """Release what the store holds; idempotent. The default does nothing."""


class PostProcessor(Component, abc.ABC):
    """One step of the post-processing chain (resize, convert, watermark, ...).

    Each configured step (``[postprocess.<name>]``) is an instance with its own
    settings. :meth:`process` runs on the event loop: do CPU work in a worker thread
    (``anyio.to_thread.run_sync``).
    """

    @abc.abstractmethod
    async def process(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Return the transformed image (a new object; never mutate the input).

        Raises:
            PostProcessingError: with a message naming the step.
        """


@runtime_checkable
class ImageServiceAPI(Protocol):
    """The image service as the ``register_tools`` hook receives it.

    Plugins add MCP tools that call these methods rather than components
    directly, so that a plugin's images pass the same limits, slots,
    post-processing, storage and ``image_stored`` listeners as the built-in
    tools'. Image ids are checked; errors are the types of
    :mod:`mcp_imagegen.errors`.
    """

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

        Args:
            request: What to generate; ``seed`` may be ``None`` (one is drawn).
            progress: Receives backend progress.
            backend: Instance name; ``None`` uses ``generation.backend``.
            postprocess: Step names; ``None`` uses ``generation.postprocess``.
            output_format: "png", "jpeg" or "webp"; ``None`` uses
                ``generation.output_format`` (unset: keep the backend's format).

        Returns:
            The stored images: each record is ``.record``, its bytes ``.data``.
        """
        ...

    async def transform(
        self,
        image_id: str,
        postprocess: Sequence[str],
        output_format: str | None = None,
    ) -> StoredImage:
        """Apply steps to a stored image; store the result as a new image.

        The source is never changed; the new record names it in
        ``source_image_id``.

        Returns:
            The new image: its record is ``.record``, its bytes ``.data``.
        """
        ...

    async def edit(
        self,
        image: str,
        prompt: str,
        *,
        mask: str | None = None,
        strength: float = 0.6,
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
        """Edit an image (image-to-image; inpainting with ``mask``); store the result.

        Args:
            image: A stored image id, ``image://{id}``, a
                ``data:image/...;base64,`` URI, or (when ``[inputs]`` allows) a
                local path or an http(s) URL.
            prompt: What the result should show.
            mask: As ``image``; white = repaint, black = keep. Of the image's
                size (resized with it) or of the edit size.
            strength: 0 keeps the input, 1 ignores it.
            width, height: The edit size; default the input's, fitted to the
                limits and rounded to the side multiple.
            backend, postprocess, output_format: as :meth:`generate`.
            progress: Receives backend progress.
            style: The name of the style already applied to ``prompt`` (see
                ``ImageService.apply_style``), recorded in the new record.

        Returns:
            The new image; its record names the input in ``source_image_id``
            (a stored image) or ``origin`` (an outside one).
        """
        ...

    async def ingest(
        self,
        *,
        data: str | None = None,
        url: str | None = None,
        path: str | None = None,
    ) -> StoredImage:
        """Store an outside image as it is, to edit, transform and list it.

        Exactly one of ``data`` (a data URI or base64), ``url`` or ``path``
        (both only when ``[inputs]`` allows). The record has ``backend``
        ``"ingest"``, an empty prompt and ``origin`` set.
        """
        ...

    async def load(self, image_id: str) -> StoredImage:
        """Return a stored image with its record."""
        ...

    async def get_record(self, image_id: str) -> ImageRecord:
        """Return a stored image's record."""
        ...

    async def list_images(
        self, limit: int = 20, cursor: str | None = None
    ) -> ImagePage:
        """List stored images, newest first (``limit`` 1 to 100)."""
        ...

    async def delete(self, image_id: str) -> None:
        """Delete a stored image."""
        ...

    async def url_for(self, image_id: str) -> str:
        """Return a link to a stored image."""
        ...
