"""Tools over stored images: ``list_images``, ``get_image``, ``delete_image``."""

# No ``from __future__ import annotations``: the SDK reads these signatures
# (and their Context parameter) as evaluated objects.

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from mcp_imagegen._mcp import fields
from mcp_imagegen._mcp.content import (
    DeleteResult,
    ImageInfo,
    ImageList,
    Inline,
    image_content,
    listed_infos,
)
from mcp_imagegen._mcp.tools import (
    ToolContext,
    add_tool,
    link_of,
    service_of,
    tool_errors,
)
from mcp_imagegen._service import MAX_LIST_LIMIT, ImageService
from mcp_imagegen.models import ImageRecord


async def list_images(
    ctx: ToolContext,
    limit: Annotated[
        int,
        Field(
            description=f"Page size (1-{MAX_LIST_LIMIT}).",
            json_schema_extra=fields.number_schema(minimum=1, maximum=MAX_LIST_LIMIT),
        ),
    ] = 20,
    cursor: Annotated[
        str | None, Field(description="next_cursor from the previous page.")
    ] = None,
) -> ImageList:
    """List stored images, newest first."""
    service = service_of(ctx)
    with tool_errors("list_images"):
        page = await service.list_images(limit, cursor)
        return ImageList(
            images=await listed_infos(service, page.items, link_of(ctx)),
            next_cursor=page.next_cursor,
        )


async def get_image(
    image_id: Annotated[str, Field(description="Id of the stored image.")],
    ctx: ToolContext,
    inline: Inline = "preview",
) -> Annotated[CallToolResult, ImageInfo]:
    """Return a stored image with its metadata, link and path or URL."""
    service = service_of(ctx)
    with tool_errors("get_image"):
        item: tuple[ImageRecord, bytes | None]
        if inline == "none":
            item = (await service.get_record(image_id), None)
        else:
            stored = await service.load(image_id)
            item = (stored.record, stored.data)
        content, infos = await image_content(service, [item], inline, link_of(ctx))
        return CallToolResult(
            content=content, structured_content=infos[0].model_dump(mode="json")
        )


async def delete_image(
    image_id: Annotated[str, Field(description="Id of the stored image.")],
    ctx: ToolContext,
) -> DeleteResult:
    """Delete a stored image and its metadata."""
    with tool_errors("delete_image"):
        await service_of(ctx).delete(image_id)
        return DeleteResult(deleted=image_id)


def register(server: MCPServer[ImageService], service: ImageService) -> None:
    """Add the gallery tools; ``get_image`` states the configured inline cap."""
    add_tool(
        server,
        list_images,
        ToolAnnotations(
            title="List images", read_only_hint=True, open_world_hint=False
        ),
    )
    add_tool(
        server,
        get_image,
        ToolAnnotations(title="Get image", read_only_hint=True, open_world_hint=False),
        {"inline": fields.inline(service)},
    )
    add_tool(
        server,
        delete_image,
        ToolAnnotations(
            title="Delete image",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
