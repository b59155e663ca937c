"""The MCP surface: tools and resources over :class:`ImageService`.

Thin by design: arguments become service calls, results become MCP content. Every
anticipated failure becomes a tool error (``isError``) or a JSON-RPC error with the
error's own message; anything unexpected is logged with its traceback and reported
to the client without internals.
"""

# No ``from __future__ import annotations``: tool argument annotations are built
# from the live configuration inside build_mcp_server, and the SDK can only
# resolve them if they are evaluated where they are written.

import base64
import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

import anyio
import structlog
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
)
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    CallToolResult,
    ContentBlock,
    ImageContent,
    ListResourcesResult,
    PaginatedRequestParams,
    Resource,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)
from pydantic import AnyUrl, BaseModel, Field

from mcp_imagegen import __version__
from mcp_imagegen._http.auth import ScopeMiddleware
from mcp_imagegen._service import MAX_LIST_LIMIT, BackendInfo, ImageService
from mcp_imagegen.errors import (
    ImageNotFoundError,
    InvalidImageIdError,
    MCPImageError,
    ValidationError,
)
from mcp_imagegen.imaging import make_preview
from mcp_imagegen.models import OUTPUT_FORMATS, ImageRecord

log = structlog.get_logger("mcp_imagegen._server")

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
Inline = Literal["preview", "full", "none"]
_IMAGE_URI = re.compile(r"^image://(?P<id>[^/]*)(?P<metadata>/metadata)?$")
RESOURCES_PAGE_SIZE = 50


# -- structured results (outputSchema) ------------------------------------------


class ImageInfo(BaseModel):
    """One stored image, as tools report it."""

    id: str
    uri: str = Field(description="MCP resource URI of the full image (image://<id>).")
    url: str = Field(description="Link to the image: file://, or http(s)://.")
    path: str | None = Field(None, description="Path on the server's machine, if any.")
    mime_type: str
    width: int
    height: int
    byte_size: int
    seed: int | None
    backend: str
    model: str | None
    prompt: str
    negative_prompt: str | None = None
    steps: int | None = Field(None, description="Inference steps, if given.")
    guidance_scale: float | None = None
    postprocess: list[str] = Field(
        default_factory=list, description="Post-processing steps applied, in order."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend and step facts (e.g. sampler, style), as recorded.",
    )
    created_at: str
    source_image_id: str | None = Field(
        None, description="The image this one was made from (transform_image)."
    )


class GenerateResult(BaseModel):
    """Result of generate_image and transform_image."""

    images: list[ImageInfo]


class ImageList(BaseModel):
    """One page of list_images."""

    images: list[ImageInfo]
    next_cursor: str | None = Field(
        None, description="Pass as cursor to get the next page; null on the last page."
    )


class DeleteResult(BaseModel):
    """Result of delete_image."""

    deleted: str


class BackendList(BaseModel):
    """Result of list_backends."""

    backends: list[BackendInfo]


# -- server ---------------------------------------------------------------------


class ImageGenServer(MCPServer[ImageService]):
    """MCPServer whose resource listing and reads come from image storage."""

    def __init__(self, service: ImageService, **kwargs: Any) -> None:
        self.service = service
        super().__init__(**kwargs)

    async def _handle_list_resources(
        self, ctx: Any, params: PaginatedRequestParams | None
    ) -> ListResourcesResult:
        # Stored images are dynamic and unbounded, so they are listed page by page
        # from storage rather than registered one by one.
        cursor = params.cursor if params else None
        try:
            page = await self.service.list_images(RESOURCES_PAGE_SIZE, cursor)
        except MCPImageError as exc:
            # Unlike resources/read, the SDK maps no exception of a list handler
            # to its message ("Internal server error"), so raise the JSON-RPC
            # error ourselves: a bad cursor is the caller's mistake.
            code = (
                INVALID_PARAMS if isinstance(exc, ValidationError) else INTERNAL_ERROR
            )
            raise MCPError(code=code, message=str(exc)) from None
        resources = [
            Resource(
                uri=f"image://{record.id}",
                name=record.id,
                title=_short(record.prompt, 60),
                description=f"{record.width}x{record.height} image: {record.prompt}",
                mime_type=record.mime_type,
                size=record.byte_size,
            )
            for record in page.items
        ]
        return ListResourcesResult(
            resources=[*await self.list_resources(), *resources],
            next_cursor=page.next_cursor,
        )

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[ImageService, Any] | None = None
    ) -> Iterable[ReadResourceContents]:
        """Serve ``image://<id>`` (bytes, real mime type) and its ``/metadata``."""
        match = _IMAGE_URI.match(str(uri))
        if match is None:
            return await super().read_resource(uri, context)  # type: ignore[return-value]
        image_id = match["id"]
        try:
            if match["metadata"]:
                record = await self.service.get_record(image_id)
                return [
                    ReadResourceContents(
                        content=record.model_dump_json(indent=2),
                        mime_type="application/json",
                    )
                ]
            stored = await self.service.load(image_id)
        except (ImageNotFoundError, InvalidImageIdError) as exc:
            raise ResourceNotFoundError(str(exc)) from None
        except MCPImageError as exc:
            raise ResourceError(str(exc)) from None
        return [
            ReadResourceContents(content=stored.data, mime_type=stored.record.mime_type)
        ]


async def _image_info(service: ImageService, record: ImageRecord) -> ImageInfo:
    path = service.storage.local_path(record.id)
    return ImageInfo(
        id=record.id,
        uri=f"image://{record.id}",
        url=await service.storage.url_for(record.id),
        path=str(path) if path else None,
        mime_type=record.mime_type,
        width=record.width,
        height=record.height,
        byte_size=record.byte_size,
        seed=record.seed,
        backend=record.backend,
        model=record.model,
        prompt=record.prompt,
        negative_prompt=record.negative_prompt,
        steps=record.steps,
        guidance_scale=record.guidance_scale,
        postprocess=record.postprocess,
        parameters=record.parameters,
        created_at=record.created_at.isoformat(),
        source_image_id=record.source_image_id,
    )


async def _listed_infos(
    service: ImageService, records: list[ImageRecord]
) -> list[ImageInfo]:
    """Entries for a listed page; images deleted since the listing are left out."""
    infos: list[ImageInfo] = []
    for record in records:
        try:
            infos.append(await _image_info(service, record))
        except ImageNotFoundError:
            # Another call deleted it after the page was read (url_for may need
            # its record again): the page shows what exists, it does not fail.
            continue
    return infos


def _number_schema(**keywords: float) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` adding JSON Schema keywords to a number property.

    Only the schema changes: it guides the model, while the service's own checks
    (with their clearer messages) stay the ones that refuse a value.
    """

    def add(schema: dict[str, Any]) -> None:
        for branch in schema.get("anyOf", [schema]):
            if branch.get("type") in ("integer", "number"):
                branch.update(keywords)

    return add


def _enum_schema(values: Sequence[str]) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` listing the accepted strings (or array items).

    Schema only, as for :func:`_number_schema`: the service also accepts aliases
    (``jpg``, any case) and names what is available when a value is unknown.
    """

    def add(schema: dict[str, Any]) -> None:
        if not values:
            return
        for branch in schema.get("anyOf", [schema]):
            if branch.get("type") == "string":
                branch["enum"] = list(values)
            elif branch.get("type") == "array":
                branch["items"] = {"type": "string", "enum": list(values)}

    return add


def _base64_size(size: int) -> int:
    """Length of ``size`` bytes once base64-encoded (with padding)."""
    return 4 * ((size + 2) // 3)


def _image_block(data: bytes, mime_type: str) -> ImageContent:
    return ImageContent(
        type="image", data=base64.b64encode(data).decode(), mime_type=mime_type
    )


def _short(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


async def _call(operation: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run a tool's work, turning our errors into tool errors."""
    try:
        return await work()
    except MCPImageError as exc:
        log.info(
            "tool_failed", tool=operation, error_type=type(exc).__name__, error=str(exc)
        )
        raise ToolError(str(exc)) from None
    except ToolError:
        raise
    except Exception:
        log.exception("tool_crashed", tool=operation)
        raise ToolError(
            f"{operation} failed because of an internal error; the server log has "
            "the details. The server is still running."
        ) from None


def build_mcp_server(
    service: ImageService,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
) -> ImageGenServer:
    """Create the MCP server with every tool and resource bound to ``service``.

    ``token_verifier`` and ``auth`` come from ``_http.auth.auth_for``: with them
    the HTTP app requires a token, and each tool and resource its scope.
    """
    settings = service.settings

    @asynccontextmanager
    async def lifespan(_: MCPServer[ImageService]) -> AsyncIterator[ImageService]:
        async with service:
            log.info(
                "server_started",
                backends=sorted(service.backends),
                storage=service.storage.name,
            )
            yield service

    server = ImageGenServer(
        service,
        name=settings.server.name,
        version=__version__,
        instructions=(
            "Generates images from text prompts. Call generate_image; each image is "
            "stored and returned as a preview, an image:// resource link and a "
            "path or URL. list_images / get_image / delete_image manage stored images."
        ),
        lifespan=lifespan,
        log_level="WARNING",
        token_verifier=token_verifier,
        auth=auth,
        middleware=[ScopeMiddleware()] if token_verifier is not None else None,
    )

    def tool(annotations: ToolAnnotations) -> Callable[[F], F]:
        """``server.tool`` with the docstring, dedented, as the description."""

        def decorate(fn: F) -> F:
            description = inspect.cleandoc(fn.__doc__ or "")
            return server.tool(description=description, annotations=annotations)(fn)

        return decorate

    async def inline_image(
        record: ImageRecord, data: bytes, inline: Inline, budget: int
    ) -> tuple[ImageContent | None, str | None]:
        """The inline block for one image within ``budget`` base64 bytes.

        Returns the block (None when nothing fits) and a note saying what was
        left out and why (None when the image went out as asked).
        """
        cap = f"server.max_inline_bytes = {settings.server.max_inline_bytes}"
        if inline == "full":
            if _base64_size(len(data)) <= budget:
                return _image_block(data, record.mime_type), None
            shown, mime = await anyio.to_thread.run_sync(
                make_preview, data, settings.server.preview_max_side
            )
            if _base64_size(len(shown)) <= budget:
                return _image_block(shown, mime), (
                    f"full image ({len(data)} bytes) is above the inline limit "
                    f"({cap}, counted in base64); a preview is shown instead: read "
                    "the image:// resource or open the path/URL for the full image"
                )
        else:
            shown, mime = await anyio.to_thread.run_sync(
                make_preview, data, settings.server.preview_max_side
            )
            if _base64_size(len(shown)) <= budget:
                return _image_block(shown, mime), None
        return None, (
            f"not shown inline: the call's images exceed the inline limit ({cap}, "
            "counted in base64); read the image:// resource or open the path/URL"
        )

    async def image_content(
        items: list[tuple[ImageRecord, bytes | None]], inline: Inline
    ) -> tuple[list[ContentBlock], list[ImageInfo]]:
        """Build the content blocks for images; ``bytes`` may be None if inline=none.

        Inline image data shares one budget, ``server.max_inline_bytes``, across
        the images of the call, so no tool result grows past what clients handle.
        """
        content: list[ContentBlock] = []
        infos = [await _image_info(service, record) for record, _ in items]
        notes: list[str | None] = []
        budget = settings.server.max_inline_bytes
        for (record, data), info in zip(items, infos, strict=True):
            note = None
            if inline != "none" and data is not None:
                block, note = await inline_image(record, data, inline, budget)
                if block is not None:
                    budget -= len(block.data)
                    content.append(block)
            notes.append(note)
            content.append(
                ResourceLink(
                    type="resource_link",
                    uri=info.uri,
                    name=record.id,
                    title=_short(record.prompt, 60),
                    mime_type=record.mime_type,
                    size=record.byte_size,
                )
            )
        lines = [
            f"- {info.id}: {info.path or info.url} "
            f"({info.width}x{info.height} {info.mime_type}, seed {info.seed})"
            + (f"; {note}" if note else "")
            for info, note in zip(infos, notes, strict=True)
        ]
        noun = "image" if len(infos) == 1 else "images"
        content.append(
            TextContent(type="text", text=f"{len(infos)} {noun}:\n" + "\n".join(lines))
        )
        return content, infos

    limits, defaults = settings.limits, settings.generation

    # Argument schemas built from the live configuration: what the model sees is
    # what this server accepts.
    def side_field(name: str) -> Any:
        return Field(
            description=f"{name} in pixels: {limits.min_side}-{limits.max_side}, a "
            f"multiple of {limits.side_multiple}, at most {limits.max_pixels} pixels "
            f"in all; default {getattr(defaults, name.lower())}.",
            json_schema_extra=_number_schema(
                minimum=limits.min_side,
                maximum=limits.max_side,
                multipleOf=limits.side_multiple,
            ),
        )

    def format_field() -> Any:
        return Field(
            description="Format of the stored image: "
            f"{', '.join(OUTPUT_FORMATS)}; omit to keep the "
            + (
                f"configured '{defaults.output_format}'."
                if defaults.output_format
                else "backend's format."
            ),
            json_schema_extra=_enum_schema(list(OUTPUT_FORMATS)),
        )

    def steps_field(description: str) -> Any:
        return Field(
            description=description,
            json_schema_extra=_enum_schema(sorted(service.steps)),
        )

    def inline_field() -> Any:
        return Field(
            description="What image data to return: 'preview' (default, small), "
            "'full' (the stored bytes) or 'none' (link and path only). Inline "
            f"data is capped at {settings.server.max_inline_bytes} bytes (base64) "
            "per call; past it, previews or links are returned instead.",
        )

    @tool(
        annotations=ToolAnnotations(
            title="Generate image",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        )
    )
    async def generate_image(
        prompt: Annotated[str, Field(description="What the image should show.")],
        ctx: Context[ImageService, Any],
        negative_prompt: Annotated[
            str | None,
            Field(description="What the image should not show (if the backend can)."),
        ] = None,
        width: Annotated[int | None, side_field("Width")] = None,
        height: Annotated[int | None, side_field("Height")] = None,
        num_images: Annotated[
            int | None,
            Field(
                description=f"How many images (1-{limits.max_images}); default "
                f"{defaults.num_images}.",
                json_schema_extra=_number_schema(minimum=1, maximum=limits.max_images),
            ),
        ] = None,
        seed: Annotated[
            int | None,
            Field(
                description="Seed for reproducible results; random if omitted. "
                "Image i of the call uses seed + i.",
                json_schema_extra=_number_schema(minimum=0, maximum=2**32 - 1),
            ),
        ] = None,
        steps: Annotated[
            int | None,
            Field(
                description=f"Inference steps (1-{limits.max_steps}); more is "
                "slower and usually finer. Omit for the backend's default.",
                json_schema_extra=_number_schema(minimum=1, maximum=limits.max_steps),
            ),
        ] = None,
        guidance_scale: Annotated[
            float | None,
            Field(
                description="How strictly to follow the prompt (0-50, typically "
                "5-9). Omit for the backend's default.",
                json_schema_extra=_number_schema(minimum=0, maximum=50),
            ),
        ] = None,
        backend: Annotated[
            str | None,
            Field(
                description="Backend instance (see list_backends); default "
                f"'{settings.generation.backend}'.",
                json_schema_extra=_enum_schema(sorted(service.backends)),
            ),
        ] = None,
        output_format: Annotated[str | None, format_field()] = None,
        postprocess: Annotated[
            list[str] | None,
            steps_field(
                "Post-processing steps replacing the default chain "
                f"({', '.join(settings.generation.postprocess) or 'none'}), in "
                "order; [] for none."
            ),
        ] = None,
        inline: Annotated[Inline, inline_field()] = "preview",
    ) -> Annotated[CallToolResult, GenerateResult]:
        """Generate images from a text prompt and store them.

        Returns each image as a preview, an image:// resource link and its path or URL.
        """

        async def report(
            done: float, total: float | None = None, message: str | None = None
        ) -> None:
            await ctx.report_progress(done, total, message)

        async def work() -> CallToolResult:
            request = settings.generation.request(
                prompt,
                negative_prompt=negative_prompt,
                width=width,
                height=height,
                num_images=num_images,
                seed=seed,
                steps=steps,
                guidance_scale=guidance_scale,
            )
            stored = await service.generate_stored(
                request,
                report,
                backend=backend,
                postprocess=postprocess,
                output_format=output_format,
            )
            content, infos = await image_content(
                [(image.record, image.data) for image in stored], inline
            )
            return CallToolResult(
                content=content,
                structured_content=GenerateResult(images=infos).model_dump(mode="json"),
            )

        return await _call("generate_image", work)

    @tool(
        annotations=ToolAnnotations(
            title="Transform image",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        )
    )
    async def transform_image(
        image_id: Annotated[
            str, Field(description="Id of the stored image to transform.")
        ],
        postprocess: Annotated[
            list[str], steps_field("Post-processing steps to apply, in order.")
        ],
        output_format: Annotated[str | None, format_field()] = None,
        inline: Annotated[Inline, inline_field()] = "preview",
    ) -> Annotated[CallToolResult, GenerateResult]:
        """Apply post-processing steps to a stored image, storing a new image.

        The original image is never changed.
        """

        async def work() -> CallToolResult:
            image = await service.transform_stored(image_id, postprocess, output_format)
            content, infos = await image_content([(image.record, image.data)], inline)
            return CallToolResult(
                content=content,
                structured_content=GenerateResult(images=infos).model_dump(mode="json"),
            )

        return await _call("transform_image", work)

    @tool(
        annotations=ToolAnnotations(
            title="List images", read_only_hint=True, open_world_hint=False
        )
    )
    async def list_images(
        limit: Annotated[
            int,
            Field(
                description=f"Page size (1-{MAX_LIST_LIMIT}).",
                json_schema_extra=_number_schema(minimum=1, maximum=MAX_LIST_LIMIT),
            ),
        ] = 20,
        cursor: Annotated[
            str | None, Field(description="next_cursor from the previous page.")
        ] = None,
    ) -> ImageList:
        """List stored images, newest first."""

        async def work() -> ImageList:
            page = await service.list_images(limit, cursor)
            return ImageList(
                images=await _listed_infos(service, page.items),
                next_cursor=page.next_cursor,
            )

        return await _call("list_images", work)

    @tool(
        annotations=ToolAnnotations(
            title="Get image", read_only_hint=True, open_world_hint=False
        )
    )
    async def get_image(
        image_id: Annotated[str, Field(description="Id of the stored image.")],
        inline: Annotated[Inline, inline_field()] = "preview",
    ) -> Annotated[CallToolResult, ImageInfo]:
        """Return a stored image with its metadata, link and path or URL."""

        async def work() -> CallToolResult:
            item: tuple[ImageRecord, bytes | None]
            if inline == "none":
                item = (await service.get_record(image_id), None)
            else:
                stored = await service.load(image_id)
                item = (stored.record, stored.data)
            content, infos = await image_content([item], inline)
            return CallToolResult(
                content=content, structured_content=infos[0].model_dump(mode="json")
            )

        return await _call("get_image", work)

    @tool(
        annotations=ToolAnnotations(
            title="Delete image",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        )
    )
    async def delete_image(
        image_id: Annotated[str, Field(description="Id of the stored image.")],
    ) -> DeleteResult:
        """Delete a stored image and its metadata."""

        async def work() -> DeleteResult:
            await service.delete(image_id)
            return DeleteResult(deleted=image_id)

        return await _call("delete_image", work)

    @tool(
        annotations=ToolAnnotations(
            title="List backends", read_only_hint=True, open_world_hint=True
        )
    )
    async def list_backends() -> BackendList:
        """List the configured backends with their capabilities and health."""

        async def work() -> BackendList:
            return BackendList(backends=await service.describe_backends())

        return await _call("list_backends", work)

    @server.resource(
        "image://{image_id}",
        name="image",
        description="A stored image (full resolution).",
        mime_type="image/png",
    )
    async def image_resource(image_id: str) -> bytes:
        contents = await server.read_resource(f"image://{image_id}")
        return next(iter(contents)).content  # type: ignore[return-value]

    @server.resource(
        "image://{image_id}/metadata",
        name="image-metadata",
        description="Generation metadata of a stored image (JSON).",
        mime_type="application/json",
    )
    async def image_metadata_resource(image_id: str) -> str:
        contents = await server.read_resource(f"image://{image_id}/metadata")
        return next(iter(contents)).content  # type: ignore[return-value]

    return server
