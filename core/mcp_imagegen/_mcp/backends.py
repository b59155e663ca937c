"""The backend tool: ``list_backends``."""

# No ``from __future__ import annotations``: the SDK reads these signatures
# (and their Context parameter) as evaluated objects.

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from mcp_imagegen._mcp.content import BackendList
from mcp_imagegen._mcp.tools import ToolContext, add_tool, service_of, tool_errors
from mcp_imagegen._service import ImageService


async def list_backends(ctx: ToolContext) -> BackendList:
    """List the configured backends with their capabilities and health."""
    with tool_errors("list_backends"):
        return BackendList(backends=await service_of(ctx).describe_backends())


def register(server: MCPServer[ImageService], service: ImageService) -> None:
    """Add ``list_backends``."""
    add_tool(
        server,
        list_backends,
        ToolAnnotations(
            title="List backends", read_only_hint=True, open_world_hint=True
        ),
    )
