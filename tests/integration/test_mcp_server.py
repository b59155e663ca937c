"""The MCP surface, driven in memory by the SDK's client: every tool and resource."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp
import pytest
from mcp.shared.exceptions import MCPError
from mcp.types import (
    BlobResourceContents,
    CallToolResult,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from mcp_imagegen import hookimpl
from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import PluginManager
from mcp_imagegen_file.storage import FileStorage, FileStorageSettings
from tests.conftest import (
    BAD_IMAGE_IDS,
    image_size,
    make_record,
    png_bytes,
    stored_file,
)

pytestmark = pytest.mark.anyio

SMALL = {"prompt": "a small cat", "width": 64, "height": 64}


def blocks(result: CallToolResult, kind: type[Any]) -> list[Any]:
    return [block for block in result.content if isinstance(block, kind)]


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result
    [text] = blocks(result, TextContent)
    assert "Traceback" not in text.text
    return str(text.text)


def image_files(directory: Path) -> list[str]:
    """Names of every file the storage keeps (in its day/hour folders)."""
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


async def generate(client: mcp.Client, **arguments: Any) -> CallToolResult:
    result = await client.call_tool("generate_image", {**SMALL, **arguments})
    assert not result.is_error, result
    return result


def ids_of(result: CallToolResult) -> list[str]:
    assert result.structured_content is not None
    return [image["id"] for image in result.structured_content["images"]]


# -- tools/list -----------------------------------------------------------------------


async def test_every_tool_is_listed_with_annotations_and_output_schema(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) >= {
        "generate_image",
        "list_images",
        "get_image",
        "delete_image",
        "list_backends",
        "transform_image",
    }
    for tool in tools.values():
        assert tool.annotations is not None, tool.name
        assert tool.output_schema is not None, tool.name
        assert tool.description, tool.name
    assert tools["list_images"].annotations.read_only_hint is True
    assert tools["delete_image"].annotations.destructive_hint is True
    assert tools["generate_image"].input_schema["required"] == ["prompt"]


async def test_output_schemas_are_self_contained_and_as_strict_as_the_models(
    connect: Callable[..., mcp.Client],
) -> None:
    # Every client validates every result against these (the SDK's client with
    # jsonschema): references and anyOf branches made that ~4x slower.
    async with connect() as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await generate(client)
    schema = tools["generate_image"].output_schema
    assert schema is not None
    for tool in tools.values():
        text = json.dumps(tool.output_schema)
        assert "$ref" not in text and "$defs" not in text, tool.name

    validator = jsonschema.Draft202012Validator(schema)
    [image] = result.structured_content["images"]  # type: ignore[index]
    validator.validate(result.structured_content)
    validator.validate({"images": [{**image, "seed": None, "model": None}]})
    bad = [
        {**image, "seed": "7"},
        {**image, "width": None},
        {**image, "postprocess": None},
        {**image, "negative_prompt": 3},
        {k: v for k, v in image.items() if k != "id"},
    ]
    for wrong in bad:
        assert not validator.is_valid({"images": [wrong]}), wrong


# -- generate_image -------------------------------------------------------------------


async def test_generate_image_returns_preview_link_and_text_for_each_image(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    async with connect() as client:
        result = await generate(
            client, prompt="two wide cats", width=1024, height=768, num_images=2
        )

    ids = ids_of(result)
    previews = blocks(result, ImageContent)
    links = blocks(result, ResourceLink)
    [text] = blocks(result, TextContent)
    assert len(ids) == len(set(ids)) == 2
    assert len(previews) == 2
    for preview in previews:
        data = base64.b64decode(preview.data)
        assert max(image_size(data)) <= 512
        assert len(data) < 1_000_000
    assert [link.uri for link in links] == [f"image://{i}" for i in ids]
    assert {link.mime_type for link in links} == {"image/png"}
    for image_id in ids:
        path = stored_file(image_dir, image_id, "png")
        assert f"{image_id}: {path}" in text.text
        assert image_size(path.read_bytes()) == (1024, 768)


async def test_generate_image_structured_content_describes_each_image(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    async with connect() as client:
        result = await generate(client, seed=1234, negative_prompt="dogs")

    [image] = result.structured_content["images"]  # type: ignore[index]
    assert image["uri"] == f"image://{image['id']}"
    assert image["path"] == str(stored_file(image_dir, image["id"], "png"))
    assert image["url"] == stored_file(image_dir, image["id"], "png").as_uri()
    assert image["seed"] == 1234
    assert (image["width"], image["height"]) == (64, 64)
    assert image["mime_type"] == "image/png"
    assert image["backend"] == "placeholder"
    assert image["prompt"] == "a small cat"


async def test_preview_longest_side_follows_server_preview_max_side(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect({"server": {"preview_max_side": 128}}) as client:
        result = await generate(client, width=512, height=256)

    [preview] = blocks(result, ImageContent)
    assert image_size(base64.b64decode(preview.data)) == (128, 64)


async def test_preview_of_the_largest_image_stays_under_one_megabyte(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect({"server": {"preview_max_side": 2048}}) as client:
        result = await generate(client, width=2048, height=2048)

    [preview] = blocks(result, ImageContent)
    assert len(base64.b64decode(preview.data)) < 1_000_000


async def test_inline_full_returns_the_stored_bytes(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    async with connect() as client:
        result = await generate(client, width=640, height=640, inline="full")

    [image] = blocks(result, ImageContent)
    [image_id] = ids_of(result)
    assert image.mime_type == "image/png"
    stored = stored_file(image_dir, image_id, "png")
    assert base64.b64decode(image.data) == stored.read_bytes()


async def test_inline_none_returns_no_image_but_still_link_and_text(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        result = await generate(client, inline="none")

    [image_id] = ids_of(result)
    assert blocks(result, ImageContent) == []
    assert [link.uri for link in blocks(result, ResourceLink)] == [
        f"image://{image_id}"
    ]
    assert image_id in blocks(result, TextContent)[0].text


async def test_output_format_changes_the_stored_format_and_the_link_mime_type(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    async with connect() as client:
        result = await generate(client, output_format="jpeg")

    [image_id] = ids_of(result)
    [link] = blocks(result, ResourceLink)
    assert link.mime_type == "image/jpeg"
    assert stored_file(image_dir, image_id, "jpg").read_bytes()[:3] == b"\xff\xd8\xff"


async def test_generate_image_reports_progress_to_a_progress_callback(
    connect: Callable[..., mcp.Client],
) -> None:
    reports: list[tuple[float, float | None]] = []

    async def on_progress(
        progress: float, total: float | None, message: str | None
    ) -> None:
        reports.append((progress, total))

    async with connect() as client:
        await client.call_tool(
            "generate_image", {**SMALL, "steps": 3}, progress_callback=on_progress
        )

    assert reports == [(1, 3), (2, 3), (3, 3)]


async def test_eight_concurrent_generate_calls_all_succeed_with_distinct_ids(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    ids: list[str] = []

    async def one(client: mcp.Client, index: int) -> None:
        result = await generate(client, prompt=f"cat number {index}")
        ids.extend(ids_of(result))

    async with connect() as client, anyio.create_task_group() as group:
        for index in range(8):
            group.start_soon(one, client, index)

    assert len(set(ids)) == 8
    assert image_files(image_dir) == sorted(
        [f"{i}.json" for i in ids] + [f"{i}.png" for i in ids]
    )


async def test_cancelled_call_stops_generation_frees_its_slot_and_leaves_no_files(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    settings = {
        # One slot, one waiter: the second call can only run once the cancelled
        # one has really stopped on the server.
        "server": {"max_concurrent_generations": 1, "max_queued_generations": 1},
        "backends": {
            "placeholder": {"delay_ms": 60_000},
            "quick": {"type": "placeholder"},
        },
    }
    started = anyio.Event()

    async def on_progress(*_: Any) -> None:
        started.set()

    async def slow_call(client: mcp.Client) -> None:
        await client.call_tool(
            "generate_image", {**SMALL, "steps": 1}, progress_callback=on_progress
        )

    with anyio.fail_after(30):  # safety net: an uncancelled call would take minutes
        async with connect(settings) as client:
            async with anyio.create_task_group() as group:
                group.start_soon(slow_call, client)
                await anyio.wait_all_tasks_blocked()
                group.cancel_scope.cancel()
            result = await generate(client, backend="quick")

    assert not started.is_set()
    [image_id] = ids_of(result)
    assert image_files(image_dir) == [f"{image_id}.json", f"{image_id}.png"]


# -- list / get / delete -------------------------------------------------------------


async def test_list_images_pages_newest_first(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        created = []
        for index in range(3):
            created += ids_of(await generate(client, prompt=f"cat {index}"))
        first = await client.call_tool("list_images", {"limit": 2})
        cursor = first.structured_content["next_cursor"]  # type: ignore[index]
        second = await client.call_tool("list_images", {"limit": 2, "cursor": cursor})

    first_ids = [i["id"] for i in first.structured_content["images"]]  # type: ignore[index]
    second_ids = [i["id"] for i in second.structured_content["images"]]  # type: ignore[index]
    assert first_ids + second_ids == list(reversed(created))
    assert second.structured_content["next_cursor"] is None  # type: ignore[index]


async def test_get_image_returns_preview_link_text_and_metadata(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        [image_id] = ids_of(await generate(client, seed=5))
        result = await client.call_tool("get_image", {"image_id": image_id})

    assert not result.is_error
    assert result.structured_content["id"] == image_id  # type: ignore[index]
    assert result.structured_content["seed"] == 5  # type: ignore[index]
    assert len(blocks(result, ImageContent)) == 1
    assert [link.uri for link in blocks(result, ResourceLink)] == [
        f"image://{image_id}"
    ]
    assert image_id in blocks(result, TextContent)[0].text


async def test_delete_image_removes_the_image_everywhere(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    async with connect() as client:
        [image_id] = ids_of(await generate(client))
        deleted = await client.call_tool("delete_image", {"image_id": image_id})
        get_after = await client.call_tool("get_image", {"image_id": image_id})
        listed = await client.call_tool("list_images", {})
        with pytest.raises(MCPError, match="No image with id"):
            await client.read_resource(f"image://{image_id}")

    assert deleted.structured_content == {"deleted": image_id}
    assert f"No image with id '{image_id}' exists" in error_text(get_after)
    assert listed.structured_content["images"] == []  # type: ignore[index]
    assert image_files(image_dir) == []


async def test_list_backends_reports_instances_capabilities_and_health(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect({"backends": {"slow": {"type": "placeholder"}}}) as client:
        result = await client.call_tool("list_backends", {})

    backends = {b["name"]: b for b in result.structured_content["backends"]}  # type: ignore[index]
    assert set(backends) == {"placeholder", "slow"}
    assert backends["placeholder"]["default"] is True
    assert backends["slow"]["type"] == "placeholder"
    assert backends["slow"]["health"]["status"] == "ok"
    assert backends["slow"]["capabilities"]["max_images"] == 4


async def test_transform_image_stores_a_new_image_from_a_stored_one(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect({"postprocess": {"frame": {"type": "border", "width": 4}}}) as (
        client
    ):
        [source_id] = ids_of(await generate(client))
        result = await client.call_tool(
            "transform_image", {"image_id": source_id, "postprocess": ["frame"]}
        )

    [image] = result.structured_content["images"]  # type: ignore[index]
    assert image["id"] != source_id
    assert image["source_image_id"] == source_id
    assert (image["width"], image["height"]) == (72, 72)


async def test_tool_added_by_a_plugin_is_served(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    class EchoTools:
        @hookimpl
        def register_tools(self, server: Any, service: Any) -> None:
            @server.tool()
            def count_backends() -> int:
                """How many backends are configured."""
                return len(service.backends)

    plugin_manager.register(EchoTools(), name="echo-tools")
    server = create_server(make_settings(), plugin_manager)

    async with mcp.Client(server) as client:
        result = await client.call_tool("count_backends", {})

    assert result.structured_content == {"result": 1}


# -- resources -------------------------------------------------------------------------


async def test_image_resource_is_the_full_image_with_its_mime_type(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    async with connect() as client:
        [png_id] = ids_of(await generate(client))
        [webp_id] = ids_of(await generate(client, output_format="webp"))
        png = await client.read_resource(f"image://{png_id}")
        webp = await client.read_resource(f"image://{webp_id}")

    [png_blob] = png.contents
    [webp_blob] = webp.contents
    assert isinstance(png_blob, BlobResourceContents)
    assert png_blob.mime_type == "image/png"
    png_file = stored_file(image_dir, png_id, "png")
    assert base64.b64decode(png_blob.blob) == png_file.read_bytes()
    assert isinstance(webp_blob, BlobResourceContents)
    assert webp_blob.mime_type == "image/webp"


async def test_metadata_resource_is_the_json_record(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        [image_id] = ids_of(await generate(client, seed=77, negative_prompt="rain"))
        result = await client.read_resource(f"image://{image_id}/metadata")

    [contents] = result.contents
    assert isinstance(contents, TextResourceContents)
    assert contents.mime_type == "application/json"
    record = json.loads(contents.text)
    assert record["id"] == image_id
    assert record["prompt"] == "a small cat"
    assert record["negative_prompt"] == "rain"
    assert record["seed"] == 77
    assert record["model"] == "placeholder-v1"
    assert len(record["sha256"]) == 64
    assert set(record["durations"]) == {"generate_ms", "postprocess_ms", "save_ms"}


async def test_resource_templates_are_listed(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        templates = (await client.list_resource_templates()).resource_templates

    assert {t.uri_template for t in templates} == {
        "image://{image_id}",
        "image://{image_id}/metadata",
    }


async def test_resources_list_is_paginated_over_stored_images(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    async with FileStorage(FileStorageSettings(directory=image_dir)) as storage:
        data = png_bytes()
        for _ in range(55):
            await storage.save(make_record(data), data)

    async with connect() as client:
        first = await client.list_resources(cache_mode="bypass")
        second = await client.list_resources(
            cursor=first.next_cursor, cache_mode="bypass"
        )

    # The first page opens with the static resources (backends, styles, app).
    static = [r.uri for r in first.resources if not r.uri.startswith("image://")]
    assert sorted(static) == [
        "backend://list",
        "style://list",
        "ui://mcp-imagegen/gallery",
    ]
    images = [r for r in first.resources if r.uri.startswith("image://")]
    uris = [r.uri for r in images + second.resources]
    assert len(images) == 50
    assert first.next_cursor is not None
    assert len(second.resources) == 5
    assert second.next_cursor is None
    assert len(set(uris)) == 55
    assert all(uri.startswith("image://") for uri in uris)
    assert {r.mime_type for r in images} == {"image/png"}


async def test_static_resources_are_listed_on_the_first_page_only(
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
    image_dir: Path,
) -> None:
    class StaticResource:
        @hookimpl
        def register_tools(self, server: Any, service: Any) -> None:
            @server.resource("about://imagegen", name="about", mime_type="text/plain")
            def about() -> str:
                return "about this server"

    plugin_manager.register(StaticResource(), name="static-resource")
    async with FileStorage(FileStorageSettings(directory=image_dir)) as storage:
        data = png_bytes()
        for _ in range(55):
            await storage.save(make_record(data), data)

    async with mcp.Client(create_server(make_settings(), plugin_manager)) as client:
        first = await client.list_resources(cache_mode="bypass")
        second = await client.list_resources(
            cursor=first.next_cursor, cache_mode="bypass"
        )

    first_uris = [str(r.uri) for r in first.resources]
    second_uris = [str(r.uri) for r in second.resources]
    assert first_uris.count("about://imagegen") == 1
    assert "about://imagegen" not in second_uris
    assert len(second_uris) == 5
    assert all(uri.startswith("image://") for uri in second_uris)


async def test_image_template_claims_no_single_mime_type(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        templates = (await client.list_resource_templates()).resource_templates
        [webp_id] = ids_of(await generate(client, output_format="webp"))
        webp = await client.read_resource(f"image://{webp_id}")

    mime_types = {t.uri_template: t.mime_type for t in templates}
    # Stored images are png, jpeg or webp: the template promises none of them.
    assert mime_types["image://{image_id}"] is None
    assert mime_types["image://{image_id}/metadata"] == "application/json"
    assert [c.mime_type for c in webp.contents] == ["image/webp"]


async def test_resources_list_with_an_invalid_cursor_is_an_error(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        with pytest.raises(MCPError, match="Invalid cursor"):
            await client.list_resources(cursor="garbage", cache_mode="bypass")
        await generate(client)


async def test_unknown_image_resource_is_an_error(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        with pytest.raises(MCPError, match="No image with id"):
            await client.read_resource("image://20260101T000000000-000000000000")
        with pytest.raises(MCPError, match="No image with id"):
            await client.read_resource(
                "image://20260101T000000000-000000000000/metadata"
            )
        await generate(client)


@pytest.mark.parametrize("bad_id", BAD_IMAGE_IDS)
@pytest.mark.parametrize("suffix", ["", "/metadata"])
async def test_invalid_id_in_a_resource_uri_is_an_error_and_serving_goes_on(
    bad_id: str, suffix: str, connect: Callable[..., mcp.Client]
) -> None:
    async with connect() as client:
        with pytest.raises(MCPError):
            await client.read_resource(f"image://{bad_id}{suffix}")
        await generate(client)


# -- failures ------------------------------------------------------------------------

FAILING_CALLS = [
    ("generate_image", {"prompt": ""}, "prompt must not be empty"),
    ("generate_image", {"prompt": "   "}, "prompt must not be empty"),
    ("generate_image", {"prompt": "x" * 1001}, "the limit is 1000"),
    ("generate_image", {**SMALL, "width": 56}, "width 56 is out of range"),
    ("generate_image", {**SMALL, "width": 0}, "width 0 is out of range"),
    ("generate_image", {**SMALL, "height": 2056}, "height 2056 is out of range"),
    ("generate_image", {**SMALL, "height": 100}, "not a multiple of 8"),
    ("generate_image", {**SMALL, "num_images": 0}, "num_images 0 is out of range"),
    ("generate_image", {**SMALL, "num_images": 5}, "num_images 5 is out of range"),
    ("generate_image", {**SMALL, "backend": "sdxl"}, "Unknown backend 'sdxl'"),
    ("generate_image", {**SMALL, "output_format": "bmp"}, "Unknown output_format"),
    (
        "generate_image",
        {**SMALL, "postprocess": ["no_such_step"]},
        "unknown post-processing",
    ),
    ("generate_image", {"width": 64}, "prompt"),
    ("generate_image", {**SMALL, "width": "wide"}, "width"),
    ("list_images", {"limit": 0}, "limit 0 is out of range"),
    ("list_images", {"cursor": "garbage"}, "Invalid cursor"),
    ("get_image", {"image_id": "20260101T000000000-000000000000"}, "No image with id"),
    ("delete_image", {"image_id": "20260101T000000000-000000000000"}, "No image"),
    ("transform_image", {"image_id": "nope", "postprocess": ["border"]}, "Invalid"),
]


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    FAILING_CALLS,
    ids=[f"{tool}-{message[:24]}" for tool, _, message in FAILING_CALLS],
)
async def test_bad_tool_call_is_an_error_result_and_the_next_call_succeeds(
    tool: str,
    arguments: dict[str, Any],
    message: str,
    connect: Callable[..., mcp.Client],
    image_dir: Path,
) -> None:
    async with connect() as client:
        failed = await client.call_tool(tool, arguments)
        after = await generate(client)

    assert message in error_text(failed)
    [image_id] = ids_of(after)
    assert image_files(image_dir) == [f"{image_id}.json", f"{image_id}.png"]


async def test_busy_server_answers_with_an_error_result_and_recovers(
    connect: Callable[..., mcp.Client],
) -> None:
    settings = {
        "server": {"max_concurrent_generations": 1, "max_queued_generations": 0},
        "backends": {
            "placeholder": {"delay_ms": 60_000},
            "quick": {"type": "placeholder"},
        },
    }

    async def slow_call(client: mcp.Client) -> None:
        await client.call_tool("generate_image", {**SMALL, "steps": 1})

    with anyio.fail_after(30):  # safety net only
        async with connect(settings) as client:
            async with anyio.create_task_group() as group:
                group.start_soon(slow_call, client)
                await anyio.wait_all_tasks_blocked()
                busy = await client.call_tool(
                    "generate_image", {**SMALL, "backend": "quick"}
                )
                group.cancel_scope.cancel()
            after = await generate(client, backend="quick")

    assert "The server is busy" in error_text(busy)
    assert len(ids_of(after)) == 1


@pytest.mark.parametrize("bad_id", BAD_IMAGE_IDS)
@pytest.mark.parametrize("tool", ["get_image", "delete_image", "transform_image"])
async def test_invalid_image_id_is_refused_by_every_tool_taking_one(
    tool: str, bad_id: str, connect: Callable[..., mcp.Client]
) -> None:
    arguments: dict[str, Any] = {"image_id": bad_id}
    if tool == "transform_image":
        arguments["postprocess"] = ["border"]

    async with connect() as client:
        result = await client.call_tool(tool, arguments)
        await generate(client)

    text = error_text(result)
    assert "Invalid image id" in text
    assert len(text) < 300


# -- inline size cap (server.max_inline_bytes) -------------------------------------


def inline_bytes(result: CallToolResult) -> int:
    return sum(len(block.data) for block in blocks(result, ImageContent))


async def test_inline_full_above_the_cap_falls_back_to_a_preview_and_says_so(
    connect: Callable[..., mcp.Client],
) -> None:
    # A 640x640 placeholder PNG is 27-42 kB depending on the seed; seed 1 makes
    # 37 kB, 50 kB in base64 (an unseeded one fit under the cap 1 time in 40).
    async with connect({"server": {"max_inline_bytes": 40_000}}) as client:
        result = await generate(client, width=640, height=640, inline="full", seed=1)

    [image] = blocks(result, ImageContent)
    [image_id] = ids_of(result)
    assert image.mime_type == "image/jpeg"  # the preview, not the stored PNG
    assert max(image_size(base64.b64decode(image.data))) == 512
    assert inline_bytes(result) <= 40_000
    assert [link.uri for link in blocks(result, ResourceLink)] == [
        f"image://{image_id}"
    ]
    [text] = blocks(result, TextContent)
    assert "server.max_inline_bytes" in text.text
    assert "preview" in text.text


async def test_inline_cap_applies_across_the_images_of_one_call(
    connect: Callable[..., mcp.Client],
) -> None:
    # Each 512x512 preview is the stored PNG itself: about 37 kB in base64.
    async with connect({"server": {"max_inline_bytes": 80_000}}) as client:
        result = await generate(client, width=512, height=512, num_images=4)

    assert len(blocks(result, ImageContent)) == 2
    assert inline_bytes(result) <= 80_000
    assert len(blocks(result, ResourceLink)) == 4  # every image keeps its link
    [text] = blocks(result, TextContent)
    assert text.text.count("not shown inline") == 2
    assert "server.max_inline_bytes" in text.text


# -- input schemas (guidance for the model, from the live configuration) --------------


def number_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The integer/number branch of a property schema (``X | None`` is an anyOf)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") in ("integer", "number"):
            return dict(branch)
    raise AssertionError(f"no number in {schema}")


async def test_input_schemas_carry_the_configured_bounds_and_enums(
    connect: Callable[..., mcp.Client],
) -> None:
    limits = {
        "min_side": 128,
        "max_side": 1024,
        "side_multiple": 16,
        "max_images": 3,
        "max_steps": 60,
    }
    postprocess = {"thumb": {"type": "resize", "max_side": 256}}
    async with connect({"limits": limits, "postprocess": postprocess}) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    generate_props = tools["generate_image"].input_schema["properties"]
    for side in ("width", "height"):
        bounds = number_schema(generate_props[side])
        assert bounds["minimum"] == 128
        assert bounds["maximum"] == 1024
        assert bounds["multipleOf"] == 16
    assert number_schema(generate_props["num_images"])["maximum"] == 3
    assert number_schema(generate_props["num_images"])["minimum"] == 1
    assert number_schema(generate_props["steps"])["maximum"] == 60
    guidance = number_schema(generate_props["guidance_scale"])
    assert (guidance["minimum"], guidance["maximum"]) == (0, 50)
    limit = number_schema(tools["list_images"].input_schema["properties"]["limit"])
    assert (limit["minimum"], limit["maximum"]) == (1, 100)

    for name in ("generate_image", "transform_image"):
        props = tools[name].input_schema["properties"]
        formats = [b for b in props["output_format"]["anyOf"] if "enum" in b]
        assert formats == [{"type": "string", "enum": ["png", "jpeg", "webp"]}]
        steps = [b for b in props["postprocess"].get("anyOf", [props["postprocess"]])]
        [array] = [b for b in steps if b.get("type") == "array"]
        assert "thumb" in array["items"]["enum"]
        assert "metadata" in array["items"]["enum"]
        assert set(props["inline"]["enum"]) == {"preview", "full", "none"}

    for tool in tools.values():
        for arg, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{tool.name}.{arg} has no description"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"width": 4096}, "width 4096 is out of range: use 64 to 2048"),
        ({"width": 100}, "width 100 is not a multiple of 8: use 96 or 104"),
        ({"output_format": "JPG"}, None),  # the service's own aliases still work
        ({"postprocess": ["nope"]}, "unknown post-processing step 'nope'"),
    ],
)
async def test_arguments_outside_the_schema_get_the_service_s_clear_messages(
    arguments: dict[str, Any],
    message: str | None,
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        result = await client.call_tool("generate_image", {**SMALL, **arguments})
        after = await generate(client)

    if message is None:
        assert not result.is_error, result
    else:
        assert message in error_text(result)
    assert ids_of(after)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"steps": "many"}, "valid integer"),
        ({"inline": "huge"}, "'preview', 'full' or 'none'"),
    ],
)
async def test_argument_the_sdk_rejects_is_a_clear_tool_error(
    arguments: dict[str, Any], expected: str, connect: Callable[..., mcp.Client]
) -> None:
    async with connect() as client:
        result = await client.call_tool("generate_image", {**SMALL, **arguments})
        after = await generate(client)

    text = error_text(result)
    [name] = arguments
    assert name in text
    assert expected in text
    assert "internal error" not in text.lower()
    assert ids_of(after)


async def test_get_image_returns_the_whole_recipe(
    connect: Callable[..., mcp.Client],
) -> None:
    async with connect() as client:
        [source] = ids_of(
            await generate(
                client,
                negative_prompt="dogs",
                steps=7,
                guidance_scale=4.5,
                seed=11,
            )
        )
        transformed = await client.call_tool(
            "transform_image", {"image_id": source, "postprocess": ["strip_metadata"]}
        )
        [child] = ids_of(transformed)
        result = await client.call_tool("get_image", {"image_id": child})

    info = result.structured_content
    assert info is not None
    assert info["prompt"] == "a small cat"
    assert info["negative_prompt"] == "dogs"
    assert info["steps"] == 7
    assert info["guidance_scale"] == 4.5
    assert info["seed"] == 11
    assert info["source_image_id"] == source
    assert info["postprocess"] == ["strip_metadata"]
    assert isinstance(info["parameters"], dict)
