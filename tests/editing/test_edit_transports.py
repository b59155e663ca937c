"""edit_image and ingest_image over the real transports: stdio and streamable HTTP.

``mcp-imagegen serve`` runs as a child process (the placeholder backend, file
storage); the SDK's own clients drive it. Over HTTP the whole request is capped
by ``server.http.max_body_bytes``: a data URI above it must come back to the
client as a clear error, and the server keeps serving.
"""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import BlobResourceContents, CallToolResult
from PIL import Image

from tests.conftest import MCP_IMAGEGEN_BIN
from tests.editing.conftest import picture
from tests.http.conftest import StartServer, start_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio

IMAGE = picture((96, 64), seed=9)


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def mask() -> bytes:
    grey = Image.new("L", (96, 64), 0)
    grey.paste(255, (0, 0, 48, 64))
    buffer = io.BytesIO()
    grey.save(buffer, format="PNG")
    return buffer.getvalue()


def info(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    [image] = result.structured_content["images"]
    return dict(image)


async def read_size(session: ClientSession, image_id: str) -> tuple[int, int]:
    [content] = (await session.read_resource(f"image://{image_id}")).contents
    assert isinstance(content, BlobResourceContents)
    with Image.open(io.BytesIO(base64.b64decode(content.blob))) as image:
        return image.size


async def edit_round_trip(session: ClientSession, ingested: str) -> None:
    """Edit the ingested image by id with a data-URI mask, and a data URI alone."""
    inpainted = info(
        await session.call_tool(
            "edit_image",
            {
                "image": ingested,
                "mask": data_uri(mask()),
                "prompt": "night",
                "strength": 0.5,
            },
        )
    )
    varied = info(
        await session.call_tool(
            "edit_image",
            {"image": data_uri(IMAGE), "prompt": "a variation", "width": 192},
        )
    )
    assert inpainted["source_image_id"] == ingested
    assert await read_size(session, inpainted["id"]) == (96, 64)
    assert varied["origin"] == "upload"
    assert await read_size(session, varied["id"]) == (192, 128)


async def test_over_stdio_ingest_a_path_and_edit_it(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "harbour.png").write_bytes(IMAGE)
    params = StdioServerParameters(
        command=str(MCP_IMAGEGEN_BIN),
        args=["serve"],
        env={
            **subprocess_env,
            "MCP_IMAGEGEN_LOGGING__FORMAT": "json",
            # Paths are the stdio way in: opted into for one directory.
            "MCP_IMAGEGEN_INPUTS__ALLOWED_DIRS": str(photos),
        },
        cwd=str(tmp_path / "work"),
    )
    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(60):
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            by_path = info(
                await session.call_tool(
                    "ingest_image", {"path": str(photos / "harbour.png")}
                )
            )
            by_data = info(
                await session.call_tool("ingest_image", {"data": data_uri(IMAGE)})
            )
            outside = await session.call_tool(
                "ingest_image", {"path": str(tmp_path / "server.log")}
            )
            await edit_round_trip(session, by_path["id"])

    assert by_path["origin"] == "file:/harbour.png"
    assert by_data["origin"] == "upload"
    assert outside.is_error
    assert "inputs.allowed_dirs" in str(outside.content)


async def test_over_http_ingest_and_edit_data_uris(
    start_server: StartServer,  # noqa: F811
) -> None:
    server = start_server()
    async with server.session() as session:
        ingested = info(
            await session.call_tool("ingest_image", {"data": data_uri(IMAGE)})
        )
        await edit_round_trip(session, ingested["id"])
    assert ingested["origin"] == "upload"


async def test_over_http_a_data_uri_above_the_body_cap_is_a_clear_error(
    start_server: StartServer,  # noqa: F811
) -> None:
    server = start_server(config={"server.http": {"max_body_bytes": 65536}})
    # Noise does not compress: ~200 KB of PNG, well over the cap as a body.
    noise = Image.frombytes("RGB", (256, 256), random.Random(4).randbytes(256 * 768))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    big = buffer.getvalue()
    assert len(big) > 65536
    async with server.session() as session:
        with pytest.raises(MCPError) as raised:
            await session.call_tool(
                "edit_image", {"image": data_uri(big), "prompt": "p"}
            )
        # The same session keeps working for a request under the cap.
        ingested = info(
            await session.call_tool("ingest_image", {"data": data_uri(IMAGE)})
        )
    message = raised.value.error.message
    assert message.startswith("Request body too large: "), message
    assert "over server.http.max_body_bytes (65536)" in message
    assert ingested["width"] == 96
    # Nothing of the refused request was stored: only the small ingest.
    assert len(list(server.images.rglob("*.png"))) == 1
