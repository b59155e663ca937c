"""Resources: every stored image as ``image://<id>`` and ``image://<id>/metadata``.

Stored images are dynamic and unbounded, so ``resources/list`` pages through
storage instead of registering them one by one. The SDK's high-level server
offers no paginated listing: its own handler lists only registered resources,
without the cursor. The supported way to answer a request method differently is
the low-level server's public ``add_request_handler`` (which ``MCPServer``
itself uses for completions); it needs the low-level server, which ``MCPServer``
keeps in its ``_lowlevel_server`` attribute. That attribute is the one private
name used, rather than overriding the private ``_handle_list_resources``. The
middleware chain, the only wholly public alternative, runs before parameter
validation and after the result is serialised for the client's protocol
version, so it would have to redo both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    ListResourcesResult,
    PaginatedRequestParams,
    Resource,
)

from mcp_imagegen._mcp.content import BackendList, short
from mcp_imagegen._mcp.tools import service_of
from mcp_imagegen._service import ImageService
from mcp_imagegen.errors import (
    ImageNotFoundError,
    InvalidImageIdError,
    MCPImageError,
    ValidationError,
)
from mcp_imagegen.models import ImageRecord

if TYPE_CHECKING:
    from mcp_imagegen._mcp.server import ImageGenServer

#: Stored images listed per ``resources/list`` page.
RESOURCES_PAGE_SIZE = 50
#: The template of full images: their mime type varies (png, jpeg, webp).
IMAGE_TEMPLATE = "image://{image_id}"
METADATA_TEMPLATE = "image://{image_id}/metadata"
IMAGE_URI = re.compile(r"^image://(?P<id>[^/]*)(?P<metadata>/metadata)?$")


async def read_image(
    service: ImageService, image_id: str, metadata: bool
) -> list[ReadResourceContents]:
    """The image's bytes with its real mime type, or its record as JSON.

    Raises:
        ResourceNotFoundError: for an unknown or malformed id (-32602).
        ResourceError: for any other failure, with its message.
    """
    try:
        if metadata:
            record = await service.get_record(image_id)
            return [
                ReadResourceContents(
                    content=record.model_dump_json(indent=2),
                    mime_type="application/json",
                )
            ]
        stored = await service.load(image_id)
    except (ImageNotFoundError, InvalidImageIdError) as exc:
        raise ResourceNotFoundError(str(exc)) from None
    except MCPImageError as exc:
        raise ResourceError(str(exc)) from None
    return [
        ReadResourceContents(content=stored.data, mime_type=stored.record.mime_type)
    ]


def _listed(record: ImageRecord) -> Resource:
    return Resource(
        uri=f"image://{record.id}",
        name=record.id,
        title=short(record.prompt, 60),
        description=f"{record.width}x{record.height} image: {record.prompt}",
        mime_type=record.mime_type,
        size=record.byte_size,
    )


async def list_page(
    static: Sequence[Resource],
    ctx: ServerRequestContext[ImageService, Any],
    params: PaginatedRequestParams,
) -> ListResourcesResult:
    """One ``resources/list`` page: stored images, after ``static`` on the first.

    Static (registered) resources open the first page only: repeating them on
    every page would list them once per page to a client that pages through.
    """
    try:
        page = await ctx.lifespan_context.list_images(
            RESOURCES_PAGE_SIZE, params.cursor
        )
    except MCPImageError as exc:
        # Unlike resources/read, the SDK maps no exception of a list handler
        # to its message ("Internal server error"), so raise the JSON-RPC
        # error ourselves: a bad cursor is the caller's mistake.
        code = INVALID_PARAMS if isinstance(exc, ValidationError) else INTERNAL_ERROR
        raise MCPError(code=code, message=str(exc)) from None
    first = [*static] if params.cursor is None else []
    return ListResourcesResult(
        resources=[*first, *(_listed(record) for record in page.items)],
        next_cursor=page.next_cursor,
    )


async def image_resource(image_id: str, ctx: Context[ImageService, Any]) -> bytes:
    """A stored image (full resolution)."""
    [contents] = await read_image(service_of(ctx), image_id, metadata=False)
    assert isinstance(contents.content, bytes)
    return contents.content


async def image_metadata_resource(
    image_id: str, ctx: Context[ImageService, Any]
) -> str:
    """Generation metadata of a stored image (JSON)."""
    [contents] = await read_image(service_of(ctx), image_id, metadata=True)
    assert isinstance(contents.content, str)
    return contents.content


#: The configured backends as JSON, for clients that read rather than call.
BACKENDS_URI = "backend://list"


async def describe_backends(service: ImageService) -> str:
    """The configured backends: what ``list_backends`` returns, health included."""
    try:
        backends = await service.describe_backends()
    except MCPImageError as exc:
        raise ResourceError(str(exc)) from None
    return BackendList(backends=backends).model_dump_json(indent=2)


def register(server: ImageGenServer) -> None:
    """Add the image templates, ``backend://list`` and paginated listing."""

    # The SDK injects no Context into a static resource: the server's own
    # service (the one its lifespan starts) answers.
    async def backends_resource() -> str:
        return await describe_backends(server.service)

    server.resource(
        BACKENDS_URI,
        name="backends",
        title="Backends",
        description="The configured backends with their capabilities and health "
        "(JSON, as list_backends returns).",
        mime_type="application/json",
    )(backends_resource)
    server.resource(
        IMAGE_TEMPLATE,
        name="image",
        description="A stored image (full resolution).",
    )(image_resource)
    server.resource(
        METADATA_TEMPLATE,
        name="image-metadata",
        description="Generation metadata of a stored image (JSON).",
        mime_type="application/json",
    )(image_metadata_resource)

    async def list_resources(
        ctx: ServerRequestContext[ImageService, Any], params: PaginatedRequestParams
    ) -> ListResourcesResult:
        # Static resources are read at each call: plugins add them after this.
        return await list_page(await server.list_resources(), ctx, params)

    server._lowlevel_server.add_request_handler(
        "resources/list", PaginatedRequestParams, list_resources
    )
