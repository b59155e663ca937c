"""``mcp-imagegen serve`` as a real child process, driven by the SDK's stdio client."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import BlobResourceContents, CallToolResult, ResourceLink

from tests.conftest import MCP_IMAGEGEN_BIN, image_size, stored_file

pytestmark = pytest.mark.anyio


async def test_serve_over_stdio_lists_tools_generates_with_progress_and_serves_links(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=str(MCP_IMAGEGEN_BIN),
        args=["serve"],
        env={**subprocess_env, "MCP_IMAGEGEN_LOGGING__FORMAT": "json"},
        cwd=str(tmp_path / "work"),
    )
    progress: list[tuple[float, float | None]] = []

    async def on_progress(
        done: float, total: float | None, message: str | None
    ) -> None:
        progress.append((done, total))

    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(60):
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = await session.list_tools()
            result: Any = await session.call_tool(
                "generate_image",
                {"prompt": "a lighthouse", "width": 320, "height": 192, "steps": 4},
                progress_callback=on_progress,
            )
            assert isinstance(result, CallToolResult)
            [link] = [b for b in result.content if isinstance(b, ResourceLink)]
            resource = await session.read_resource(str(link.uri))

    assert {"generate_image", "list_images", "get_image"} <= {
        t.name for t in tools.tools
    }
    assert not result.is_error
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    [blob] = resource.contents
    assert isinstance(blob, BlobResourceContents)
    assert blob.mime_type == "image/png"
    data = base64.b64decode(blob.blob)
    assert image_size(data) == (320, 192)
    [image_id] = [image["id"] for image in result.structured_content["images"]]
    images = tmp_path / "data" / "mcp-imagegen" / "images"
    stored = stored_file(images, image_id, "png")
    assert stored.read_bytes() == data
    log = (tmp_path / "server.log").read_text()
    assert '"event": "image_generated"' in log
