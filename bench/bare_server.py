"""Baseline for the benchmarks: a bare MCPServer with one tool.

``python bench/bare_server.py`` serves a ``generate_image`` tool that returns, as
ImageContent, either the PNG file named by ``$BARE_IMAGE`` (the floor any MCP image
server pays for the protocol and the payload), or with ``BARE_RENDER=1`` a freshly
drawn placeholder image (the floor for producing that image: drawing plus protocol,
without validation, storage, metadata or previews).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.types import ImageContent, TextContent

from mcp_imagegen import GenerationRequest, ignore_progress
from mcp_imagegen_placeholder.backend import PlaceholderBackend, PlaceholderSettings

server = MCPServer("bare")
_IMAGE = (
    Path(os.environ["BARE_IMAGE"]).read_bytes() if "BARE_IMAGE" in os.environ else b""
)
_BACKEND = PlaceholderBackend(PlaceholderSettings())


@server.tool()
async def generate_image(
    prompt: str, width: int = 512, height: int = 512
) -> list[ImageContent | TextContent]:
    """Return the same image every time, or draw one (BARE_RENDER=1)."""
    data = _IMAGE
    if os.environ.get("BARE_RENDER"):
        request = GenerationRequest(prompt=prompt, width=width, height=height, seed=7)
        data = (await _BACKEND.generate(request, ignore_progress))[0].data
    return [
        ImageContent(
            type="image", data=base64.b64encode(data).decode(), mime_type="image/png"
        ),
        TextContent(type="text", text=f"{prompt}: {width}x{height}"),
    ]


if __name__ == "__main__":
    server.run("stdio")
