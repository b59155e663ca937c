"""Data types passed between the MCP surface, the service and the plugins."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
)

#: Output formats a request may ask for, and their mime types.
OUTPUT_FORMATS: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
}
#: File extension for each mime type the server stores.
EXTENSIONS: dict[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
}

Scalar = str | int | float | bool


class ProgressReporter(Protocol):
    """Async callback a backend calls to report progress.

    ``done`` and ``total`` count steps (``total`` may be ``None`` when unknown);
    ``message`` is a short human-readable status such as ``"step 3/20"``.
    """

    def __call__(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> Awaitable[None]: ...


async def ignore_progress(
    done: float, total: float | None = None, message: str | None = None
) -> None:
    """A :class:`ProgressReporter` that discards every report."""


class GenerationRequest(BaseModel):
    """A validated request to generate images.

    By the time a backend sees it, ``seed`` is always set: the service draws a random
    seed when the caller gave none, so that every image can be reproduced. Image ``i``
    of the request uses ``seed + i``.
    """

    model_config = ConfigDict(frozen=True)

    prompt: str
    negative_prompt: str | None = None
    width: int = 512
    height: int = 512
    num_images: int = 1
    seed: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    model: str | None = None
    parameters: dict[str, Scalar] = Field(default_factory=dict)
    #: Input image for image-to-image / inpainting: encoded PNG bytes, already
    #: decoded, checked and sized to ``width`` x ``height`` by the service.
    image: bytes | None = Field(default=None, repr=False)
    #: Inpainting mask (PNG, same size as ``image``): white = repaint, black = keep.
    mask: bytes | None = Field(default=None, repr=False)
    #: How far an edit may move away from ``image`` (0 keeps it, 1 ignores it).
    strength: float | None = None
    #: Name of the style applied to ``prompt`` (already expanded), for the recipe.
    style: str | None = None

    def seed_for(self, index: int) -> int:
        """Return the seed of image ``index`` (0-based) of this request."""
        return ((self.seed or 0) + index) % 2**32


class GeneratedImage(BaseModel):
    """One encoded image, as produced by a backend or a post-processing step."""

    model_config = ConfigDict(frozen=True)

    data: bytes = Field(repr=False)
    mime_type: str
    width: int
    height: int
    seed: int | None = None
    model: str | None = None
    #: Backend-specific facts worth recording (e.g. the scheduler actually used).
    parameters: dict[str, Scalar] = Field(default_factory=dict)
    # The very ``data`` object an encoder in this process wrote (set by
    # ``imaging.mark_encoded``): a fact beside the bytes, since a bytes subclass
    # costs a copy. A copy with other data keeps the old object here, so the
    # identity check in ``imaging.is_encoded_here`` then fails, as it must.
    _encoded_data: bytes | None = PrivateAttr(default=None)

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> Self:
        """A copy; one with other ``data`` forgets that the old bytes were encoded here.

        Also so that the copy does not keep the old bytes alive.
        """
        copied = super().model_copy(update=update, deep=deep)
        if copied._encoded_data is not None and copied._encoded_data is not copied.data:
            copied._encoded_data = None
        return copied


class Capabilities(BaseModel):
    """What a backend instance can do; requests are validated against it."""

    min_side: int = 64
    max_side: int = 2048
    side_multiple: int = 8
    max_pixels: int = 2048 * 2048
    max_images: int = 4
    supports_negative_prompt: bool = True
    supports_seed: bool = True
    supports_steps: bool = True
    supports_guidance_scale: bool = True
    default_steps: int | None = None
    models: list[str] = Field(default_factory=list)
    output_mime_types: list[str] = Field(default_factory=lambda: ["image/png"])
    #: Accepts ``GenerationRequest.image`` (image-to-image).
    image_input: bool = False
    #: Accepts ``GenerationRequest.mask`` (inpainting); implies ``image_input``.
    mask: bool = False


class Health(BaseModel):
    """Result of a backend health check."""

    status: Literal["ok", "degraded", "unavailable"]
    detail: str = ""
    latency_ms: float | None = None

    @property
    def ok(self) -> bool:
        """True when the backend can serve requests now."""
        return self.status == "ok"


class Durations(BaseModel):
    """How long each stage of making an image took, in milliseconds.

    ``save_ms`` is known only once the image is saved: it is set on the records
    ``ImageService`` returns and logs (``image_generated``), and is 0 in the copy
    kept by storage.
    """

    generate_ms: float = 0.0
    postprocess_ms: float = 0.0
    save_ms: float = 0.0


class ImageRecord(BaseModel):
    """Everything known about a stored image; stored beside it as JSON metadata."""

    # pydantic-core caches parsed JSON strings (16k entries); prompts and ids are
    # unique per image, so caching them only keeps memory that tracks the store.
    model_config = ConfigDict(cache_strings="keys")

    id: str
    prompt: str
    negative_prompt: str | None = None
    seed: int | None = None
    width: int
    height: int
    steps: int | None = None
    guidance_scale: float | None = None
    backend: str
    model: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    postprocess: list[str] = Field(default_factory=list)
    source_image_id: str | None = None
    #: The style applied (``[styles.<name>]``); ``prompt`` is already expanded.
    style: str | None = None
    mime_type: str
    byte_size: int
    sha256: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    durations: Durations = Field(default_factory=Durations)
    #: Where an image from outside came from (edit_image / ingest_image):
    #: ``"upload"`` (a data URI), ``"file:/<path under an allowed dir>"`` or
    #: ``"https://host/path"`` (never credentials or a query).
    origin: str | None = None

    @property
    def extension(self) -> str:
        """File extension (without dot) for this record's mime type."""
        return EXTENSIONS.get(self.mime_type, "bin")


#: What a style's ``prompt`` template must contain: where the user's prompt goes.
STYLE_PLACEHOLDER = "{prompt}"


class Style(BaseModel):
    """A named look: a prompt template, a negative prompt and default arguments.

    Configured as ``[styles.<name>]`` tables, shipped built in, or registered
    by plugins (``register_styles``). Every default is used only when the
    caller leaves that argument out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: One line for people and models choosing a style.
    description: str = ""
    #: The prompt sent to the backend; ``{prompt}`` is replaced by the caller's.
    prompt: str = STYLE_PLACEHOLDER
    #: Merged with the caller's negative prompt (the backend must support it).
    negative_prompt: str | None = None
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)
    guidance_scale: float | None = Field(None, ge=0, le=50)
    #: Backend instance the style prefers.
    backend: str | None = None
    #: Post-processing steps replacing the default chain.
    postprocess: list[str] | None = None
    #: ``false`` switches the style off (e.g. a built-in one).
    enabled: bool = True

    @field_validator("prompt")
    @classmethod
    def _has_placeholder(cls, value: str) -> str:
        if STYLE_PLACEHOLDER not in value:
            raise ValueError(
                f"the template must contain {STYLE_PLACEHOLDER}, where the "
                'caller\'s prompt goes, e.g. "watercolor painting of {prompt}"'
            )
        return value

    def apply(self, prompt: str) -> str:
        """Return the template with ``{prompt}`` replaced by ``prompt``.

        A plain replacement, not ``str.format``: other braces in the template
        or in the prompt are kept as written.
        """
        return self.prompt.replace(STYLE_PLACEHOLDER, prompt.strip())


class StoredImage(BaseModel):
    """An image read back from storage: its record and its bytes."""

    record: ImageRecord
    data: bytes = Field(repr=False)


class ImagePage(BaseModel):
    """One page of a newest-first listing; pass ``next_cursor`` to get the next."""

    items: list[ImageRecord]
    next_cursor: str | None = None


class ProcessingContext(BaseModel):
    """What a post-processing step knows about the image it is given."""

    model_config = ConfigDict(frozen=True)

    request: GenerationRequest
    #: Name of the backend instance that produced the image.
    backend: str
    #: Seed of this particular image.
    seed: int | None = None
    model: str | None = None
    #: Format the request asked for ("png", "jpeg", "webp"), if any. Steps that
    #: choose an encoding honour it over their own configured format.
    output_format: str | None = None
    #: Id of the image being transformed, when a stored image is post-processed.
    source_image_id: str | None = None
    #: Where an edited image from outside came from (see ``ImageRecord.origin``).
    origin: str | None = None


#: Lifecycle states of an MCP task (protocol revision 2025-11-25).
TaskStatus = Literal["working", "input_required", "completed", "failed", "cancelled"]


class TaskRecord(BaseModel):
    """The durable state of one MCP task, kept in a ``TaskStore``.

    Only the replica running the task (``runner``) writes its record while it is
    ``working``; it refreshes ``heartbeat_at`` so that any replica can tell a task
    whose runner died (stale heartbeat) and report it ``failed``. Cancellation from
    another replica goes through :meth:`TaskStore.request_cancel`, never by
    rewriting the record.
    """

    task_id: str
    #: Principal that created the task (``None`` without authentication); only it
    #: may see the task.
    owner: str | None = None
    tool: str
    status: TaskStatus = "working"
    status_message: str | None = None
    #: Time zone aware (a naive time is refused): stores compare it with now.
    created_at: AwareDatetime
    updated_at: AwareDatetime
    ttl_ms: int
    poll_interval_ms: int
    #: Id of the server process running the task.
    runner: str
    heartbeat_at: AwareDatetime
    #: The tool's result (a ``CallToolResult`` as JSON) once completed or failed.
    result: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        """True once the task will not change any more."""
        return self.status in ("completed", "failed", "cancelled")

    @property
    def expires_at(self) -> datetime:
        """When the record's ttl runs out: ``created_at`` + ``ttl_ms``."""
        return self.created_at + timedelta(milliseconds=self.ttl_ms)

    def expired(self, now: datetime) -> bool:
        """True once :attr:`expires_at` is before ``now`` (a naive ``now`` is UTC).

        The one expiry rule every task store applies, so a record expires at
        the same moment whichever store keeps it.
        """
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
        return self.expires_at < now


class TaskPage(BaseModel):
    """One page of a task listing; pass ``next_cursor`` to get the next."""

    items: list[TaskRecord]
    next_cursor: str | None = None
