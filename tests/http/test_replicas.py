"""Two HTTP replicas sharing one S3 bucket and prefix: any replica answers any call.

Both are real ``mcp-imagegen serve --transport http`` subprocesses (stateless, the
default) in front of the real SeaweedFS server of ``tests/s3``; credentials reach
them through the environment, as a deployment would pass them.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any

import anyio
import httpx
import pytest
from mcp.types import BlobResourceContents, CallToolResult, ImageContent, TextContent

from mcp_imagegen._http.images import ImageUrls
from tests.conftest import image_size
from tests.http.conftest import HttpServer, StartServer
from tests.s3.conftest import seaweed  # noqa: F401  (a fixture used here)
from tests.s3.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer

pytestmark = [pytest.mark.anyio, pytest.mark.s3]

#: What replicas share so each opens the links of the others (docs/http.md).
URL_SECRET = "replicas-share-this-url-secret-0123456789"


def start_replica(
    start_server: StartServer,
    s3: SeaweedServer,
    prefix: str,
    env: dict[str, str] | None = None,
) -> HttpServer:
    """One replica on the shared bucket and prefix; secrets only in its env."""
    table = s3.storage_table(prefix=prefix)
    del table["access_key_id"], table["secret_access_key"]
    return start_server(
        config={"storage": {"backend": "s3"}, "storage.s3": table},
        env={
            "MCP_IMAGEGEN_STORAGE__S3__ACCESS_KEY_ID": ACCESS_KEY,
            "MCP_IMAGEGEN_STORAGE__S3__SECRET_ACCESS_KEY": SECRET_KEY,
            **(env or {}),
        },
    )


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_an_image_made_on_one_replica_is_served_and_deleted_by_the_other(
    start_server: StartServer,
    seaweed: SeaweedServer,  # noqa: F811  (the imported fixture)
) -> None:
    prefix = f"replicas-{uuid.uuid4().hex[:12]}/"
    replica_a = start_replica(start_server, seaweed, prefix)
    replica_b = start_replica(start_server, seaweed, prefix)
    # Stateless replicas: every session below could land on either one.
    with anyio.fail_after(120):
        async with replica_a.session() as on_a:
            generated: Any = await on_a.call_tool(
                "generate_image", {"prompt": "a quay", "width": 96, "height": 64}
            )
            assert not generated.is_error, text_of(generated)
            [image_id] = [i["id"] for i in generated.structured_content["images"]]

        async with replica_b.session() as on_b:
            listed: Any = await on_b.call_tool("list_images", {})
            got: Any = await on_b.call_tool(
                "get_image", {"image_id": image_id, "inline": "full"}
            )
            resource = await on_b.read_resource(f"image://{image_id}")
            resources = await on_b.list_resources()
            deleted: Any = await on_b.call_tool("delete_image", {"image_id": image_id})

        async with replica_a.session() as on_a:
            gone: Any = await on_a.call_tool("get_image", {"image_id": image_id})
            listed_after: Any = await on_a.call_tool("list_images", {})

    assert image_id in {i["id"] for i in listed.structured_content["images"]}
    assert not got.is_error, text_of(got)
    assert got.structured_content["id"] == image_id
    # get_image on B returns the pixels A made.
    [picture] = [c for c in got.content if isinstance(c, ImageContent)]
    assert image_size(base64.b64decode(picture.data)) == (96, 64)
    [blob] = resource.contents
    assert isinstance(blob, BlobResourceContents)
    assert image_size(base64.b64decode(blob.blob)) == (96, 64)
    assert f"image://{image_id}" in {str(r.uri) for r in resources.resources}
    assert not deleted.is_error, text_of(deleted)
    # Deleted on B is gone on A: an error naming the id, not a stale copy.
    assert gone.is_error
    assert f"No image with id '{image_id}'" in text_of(gone)
    assert image_id not in {i["id"] for i in listed_after.structured_content["images"]}
    for replica in (replica_a, replica_b):
        assert SECRET_KEY not in replica.log_text()


async def test_the_image_route_of_the_other_replica_serves_the_image(
    start_server: StartServer,
    seaweed: SeaweedServer,  # noqa: F811  (the imported fixture)
) -> None:
    prefix = f"replicas-{uuid.uuid4().hex[:12]}/"
    shared = {"MCP_IMAGEGEN_SERVER__HTTP__URL_SECRET": URL_SECRET}
    replica_a = start_replica(start_server, seaweed, prefix, shared)
    replica_b = start_replica(start_server, seaweed, prefix, shared)
    with anyio.fail_after(120):
        async with replica_a.session() as on_a:
            generated: Any = await on_a.call_tool(
                "generate_image", {"prompt": "a pier", "width": 96, "height": 64}
            )
            assert not generated.is_error, text_of(generated)
            [info] = generated.structured_content["images"]
        # A capability link signed with the replicas' shared secret, as replica A
        # would sign it for a file-stored image, opened on replica B.
        link = ImageUrls(URL_SECRET.encode(), 600, replica_b.base).link(info["id"])
        async with httpx.AsyncClient() as client:
            got = await client.get(link)

    assert got.status_code == 200, got.text
    assert got.headers["etag"] == f'"{hashlib.sha256(got.content).hexdigest()}"'
    assert got.headers["content-type"] == info["mime_type"]
    assert image_size(got.content) == (96, 64)
