"""The gallery app as an MCP client sees it: resource, tool metadata, degradation."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp
import pytest
from mcp.client.extension import ClientExtension
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID, Apps
from mcp.types import CallToolResult, TextResourceContents
from PIL import Image

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._mcp.app import APP_TOOLS, GALLERY_URI, render_gallery
from mcp_imagegen._plugins import PluginManager

pytestmark = pytest.mark.anyio

SMALL = {"prompt": "a small cat", "width": 64, "height": 64, "seed": 7}
BOUND = {"generate_image", "edit_image", "transform_image", "list_images"}


class AppsHost(ClientExtension):
    """What a client that renders MCP Apps advertises."""

    identifier = EXTENSION_ID

    def settings(self) -> dict[str, Any]:
        return {"mimeTypes": [APP_MIME_TYPE]}


@pytest.fixture
def connect(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., mcp.Client]:
    def client(apps: bool = False, data: dict[str, Any] | None = None) -> mcp.Client:
        server = create_server(make_settings(data), plugin_manager)
        return mcp.Client(server, extensions=[AppsHost()] if apps else None)

    return client


def sdk_tool_meta() -> dict[str, Any]:
    """The ``_meta`` the SDK's own ``Apps.tool`` writes for the gallery URI."""
    reference = Apps()
    reference.add_html_resource(GALLERY_URI, "<!doctype html>")
    reference.tool(resource_uri=GALLERY_URI)(lambda: None)
    [binding] = reference.tools()
    assert binding.meta is not None
    return binding.meta


def page_config(html: str) -> dict[str, Any]:
    slot = r'<script type="application/json" id="config">(.*?)</script>'
    match = re.search(slot, html)
    assert match is not None, "no configuration slot in the served page"
    config: dict[str, Any] = json.loads(match.group(1))
    return config


async def test_gallery_is_listed_and_read_as_an_mcp_app(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect(apps=True) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        read = await client.read_resource(GALLERY_URI)
        tools = {t.name for t in (await client.list_tools()).tools}

    assert listed[GALLERY_URI].mime_type == APP_MIME_TYPE
    [content] = read.contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == APP_MIME_TYPE
    html = content.text
    assert html.startswith("<!doctype html>")
    # Self-contained: no remote script, style, image or connection.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "default-src 'none'" in html
    config = page_config(html)
    # What this server has (a tool it lacks is never offered).
    assert config["tools"] == [name for name in APP_TOOLS if name in tools]
    assert config["tools"] == [
        "generate_image",
        "edit_image",
        "transform_image",
        "list_images",
        "get_image",
        "delete_image",
    ]
    assert config["formats"] == ["png", "jpeg", "webp"]
    assert isinstance(config["steps"], list)
    # The styles' templates: a regenerate sends the caller's words with the style.
    assert "{prompt}" in config["styles"]["watercolor"]["prompt"]
    assert set(config["styles"]) == {
        "photo",
        "watercolor",
        "line-art",
        "product-shot",
        "pixel-art",
        "isometric",
    }
    # "Copy prompt" needs the clipboard: asked of the host the ext-apps way.
    wanted = {"ui": {"permissions": {"clipboardWrite": {}}}}
    assert listed[GALLERY_URI].meta == wanted and content.meta == wanted


async def test_the_served_steps_are_the_loaded_ones(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        read = await client.read_resource(GALLERY_URI)
    [content] = read.contents
    assert isinstance(content, TextResourceContents)
    schema = tools["transform_image"].input_schema["properties"]["postprocess"]
    assert page_config(content.text)["steps"] == schema["items"]["enum"]


async def test_bound_tools_carry_the_sdk_ui_metadata_and_others_none(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect(apps=True) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        capabilities = client.server_capabilities

    expected = sdk_tool_meta()
    assert expected == {"ui": {"resourceUri": GALLERY_URI}}
    for name in BOUND:
        assert tools[name].meta == expected, name
    for name in set(tools) - BOUND:
        assert not (tools[name].meta or {}).get("ui"), name
    assert capabilities is not None and capabilities.extensions is not None
    assert EXTENSION_ID in capabilities.extensions


def shape(result: CallToolResult) -> list[tuple[str, Any]]:
    """What a client reads from a result, ids and paths aside."""
    blocks: list[tuple[str, Any]] = []
    for block in result.content:
        data = block.model_dump(exclude={"meta"})
        for key in ("uri", "name", "text", "data"):
            data.pop(key, None)
        blocks.append((block.type, data))
    structured = result.structured_content or {}
    return [*blocks, ("structured", sorted(structured["images"][0]))]


async def test_a_client_without_apps_sees_the_same_tools_and_results(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as plain, connect(apps=True) as host:
        plain_tools = (await plain.list_tools()).tools
        host_tools = (await host.list_tools()).tools
        plain_result = await plain.call_tool("generate_image", SMALL)
        host_result = await host.call_tool("generate_image", SMALL)

    def without_meta(tools: list[Any]) -> list[dict[str, Any]]:
        return [t.model_dump(exclude={"meta"}) for t in tools]

    assert without_meta(plain_tools) == without_meta(host_tools)
    assert not plain_result.is_error and not host_result.is_error
    assert plain_result.meta == host_result.meta
    assert shape(plain_result) == shape(host_result)
    # Today's result: a preview, a resource link, and the text with the path.
    assert [block.type for block in plain_result.content] == [
        "image",
        "resource_link",
        "text",
    ]


#: An ISO timestamp (created_at) and the ids the storage hands out.
STAMP = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+(\+00:00|Z)?")


def comparable(results: list[CallToolResult], ids: list[str], root: Path) -> Any:
    """``results`` as JSON with what differs between two stores named by role.

    Ids become ``ID0``, ``ID1``... in order of creation, the store's folder
    ``ROOT``, timestamps ``TIME``; a preview becomes its pixels' digest and its
    text chunks (an edit's embedded recipe names its source id); everything
    else (texts, links, every structured field) must be equal.
    """
    dumped = [
        r.model_dump(mode="json", by_alias=True, exclude={"meta"}) for r in results
    ]
    for result in dumped:
        for block in result["content"]:
            if block["type"] == "image":
                with Image.open(io.BytesIO(base64.b64decode(block["data"]))) as image:
                    pixels = hashlib.sha256(image.tobytes()).hexdigest()
                    block["data"] = {"size": image.size, "pixels": pixels, **image.info}
    text = json.dumps(dumped, default=str)
    for number, image_id in enumerate(ids):
        text = text.replace(image_id, f"ID{number}")
    return json.loads(STAMP.sub("TIME", text.replace(str(root), "ROOT")))


async def calls_of_a_session(
    client: mcp.Client,
) -> tuple[list[CallToolResult], list[str]]:
    """generate_image, edit_image of it, then list_images: results and new ids."""
    made = await client.call_tool("generate_image", SMALL)
    assert made.structured_content is not None, made
    source = made.structured_content["images"][0]["id"]
    edited = await client.call_tool(
        "edit_image",
        {"image": source, "prompt": "a small dog", "strength": 0.5, "seed": 3},
    )
    assert edited.structured_content is not None, edited
    listed = await client.call_tool("list_images", {"limit": 10})
    assert listed.structured_content is not None, listed
    variant = edited.structured_content["images"][0]["id"]
    return [made, edited, listed], [source, variant]


async def test_edit_and_list_results_are_the_same_without_apps(
    connect: Callable[..., mcp.Client], tmp_path: Path
) -> None:
    def store(name: str) -> dict[str, Any]:
        return {"storage": {"file": {"directory": str(tmp_path / name)}}}

    async with connect(data=store("plain")) as plain:
        plain_results, plain_ids = await calls_of_a_session(plain)
    async with connect(apps=True, data=store("host")) as host:
        host_results, host_ids = await calls_of_a_session(host)

    plain_seen = comparable(plain_results, plain_ids, tmp_path / "plain")
    host_seen = comparable(host_results, host_ids, tmp_path / "host")
    assert plain_seen == host_seen
    # Both stores really held the edit and its source (the comparison is not
    # of two empty pages), with today's blocks: preview, link, text.
    [made, edited, listed] = plain_seen
    assert [b["type"] for b in edited["content"]] == ["image", "resource_link", "text"]
    assert edited["structuredContent"]["images"][0]["source_image_id"] == "ID0"
    assert [i["id"] for i in listed["structuredContent"]["images"]] == ["ID1", "ID0"]
    assert made["structuredContent"]["images"][0]["id"] == "ID0"


def test_configuration_cannot_close_its_script_element() -> None:
    html = render_gallery({"steps": ["</script><script>alert(1)</script>"]})
    config = page_config(html)
    assert config["steps"] == ["</script><script>alert(1)</script>"]
    assert html.count("</script>") == render_gallery({}).count("</script>")
