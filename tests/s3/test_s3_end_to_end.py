"""generate_image through the MCP surface, with images kept in S3."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.types import BlobResourceContents, TextContent

from mcp_imagegen import ConfigurationError
from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings, settings_from_dict
from tests.s3.seaweed import TEST_BUCKET, SeaweedServer

pytestmark = [pytest.mark.anyio, pytest.mark.s3]


@pytest.fixture
def s3_server_settings(seaweed: SeaweedServer) -> Callable[..., Settings]:
    def build(**s3_table: Any) -> Settings:
        table = seaweed.storage_table(prefix=f"e2e-{uuid.uuid4().hex[:12]}", **s3_table)
        return settings_from_dict({"storage": {"backend": "s3", "s3": table}})

    return build


async def test_generate_image_stores_in_s3_and_returns_a_working_url(
    s3_server_settings: Callable[..., Settings], seaweed: SeaweedServer
) -> None:
    async with Client(create_server(s3_server_settings())) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "a cat", "width": 512, "height": 512}
        )
        assert not result.is_error, result.content
        (info,) = result.structured_content["images"]  # type: ignore[index]
        resource = await client.read_resource(info["uri"])

    (blob,) = resource.contents
    assert isinstance(blob, BlobResourceContents)
    stored = base64.b64decode(blob.blob)
    assert info["url"].startswith(f"{seaweed.endpoint}/{TEST_BUCKET}/e2e-")
    assert "X-Amz-Signature=" in info["url"]
    assert info["path"] is None
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    assert info["url"] in text
    async with httpx.AsyncClient() as http:
        response = await http.get(info["url"])
    assert response.status_code == 200
    assert response.content == stored
    assert response.headers["content-type"] == info["mime_type"]


async def test_listed_and_deleted_images_come_from_s3(
    s3_server_settings: Callable[..., Settings],
) -> None:
    public = "https://cdn.example.com"
    async with Client(
        create_server(s3_server_settings(public_base_url=public))
    ) as client:
        generated = await client.call_tool(
            "generate_image", {"prompt": "two dogs", "num_images": 2}
        )
        ids = [i["id"] for i in generated.structured_content["images"]]  # type: ignore[index]
        listed = await client.call_tool("list_images", {})
        deleted = await client.call_tool("delete_image", {"image_id": ids[0]})
        after = await client.call_tool("list_images", {})

    listed_images = listed.structured_content["images"]  # type: ignore[index]
    assert sorted(i["id"] for i in listed_images) == sorted(ids)
    assert all(i["url"].startswith(f"{public}/e2e-") for i in listed_images)
    assert not deleted.is_error
    assert [i["id"] for i in after.structured_content["images"]] == [ids[1]]  # type: ignore[index]


async def test_server_with_a_missing_bucket_fails_to_start_naming_it(
    s3_server_settings: Callable[..., Settings],
) -> None:
    bucket = f"absent-{uuid.uuid4().hex[:12]}"
    settings = s3_server_settings(bucket=bucket)

    with pytest.raises(ConfigurationError, match=f"'{bucket}'.*NoSuchBucket"):
        async with Client(create_server(settings)):
            pass


async def test_list_images_never_fails_while_listed_images_are_deleted(
    s3_server_settings: Callable[..., Settings],
) -> None:
    # Issue 8, item 1: a listed image deleted before its entry was built turned
    # the whole listing into "No image with id ... exists".
    failures: list[str] = []
    async with Client(create_server(s3_server_settings())) as client:
        for _ in range(8):
            made = await client.call_tool(
                "generate_image", {"prompt": "soak", "num_images": 4}
            )
            assert not made.is_error, made.content
        listed = await client.call_tool("list_images", {"limit": 100})
        ids = [i["id"] for i in listed.structured_content["images"]]  # type: ignore[index]

        async def list_repeatedly() -> None:
            for _ in range(60):
                result = await client.call_tool("list_images", {"limit": 100})
                if result.is_error:
                    failures.append(str(result.content))

        async def delete_all() -> None:
            for image_id in ids:
                await client.call_tool("delete_image", {"image_id": image_id})

        async with anyio.create_task_group() as group:
            group.start_soon(list_repeatedly)
            group.start_soon(list_repeatedly)
            group.start_soon(delete_all)

    assert failures == []
