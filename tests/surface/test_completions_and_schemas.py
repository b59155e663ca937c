"""Completions, argument enums in ``tools/list`` and ``backend://list``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import mcp
import pytest
from mcp.types import PromptReference, ResourceTemplateReference

from mcp_imagegen._mcp import ImageGenServer
from mcp_imagegen._mcp.completions import MAX_VALUES

pytestmark = pytest.mark.anyio

#: Two more backends and a configured step instance beside the built-in ones.
CONFIGURED: dict[str, Any] = {
    "backends": {"fast": {"type": "placeholder"}, "slow": {"type": "placeholder"}},
    "postprocess": {"web": {"type": "convert", "format": "webp"}},
}
IMAGE = ResourceTemplateReference(uri="image://{image_id}")
METADATA = ResourceTemplateReference(uri="image://{image_id}/metadata")
# Any prompt: the handler goes by argument names, so prompts added later
# (styles) complete without more work.
A_PROMPT = PromptReference(name="any-prompt")


async def test_image_ids_complete_by_prefix_newest_first(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server()) as client:
        made = []
        for n in range(3):
            result = await client.call_tool("generate_image", {"prompt": f"n{n}"})
            made.append(result.structured_content["images"][0]["id"])  # type: ignore[index]

        everything = await client.complete(IMAGE, {"name": "image_id", "value": ""})
        assert everything.completion.values == made[::-1]
        assert everything.completion.total == 3
        assert not everything.completion.has_more

        newest = made[-1]
        # The last differing character picks out one image (ids share a time prefix).
        prefix = next(
            newest[:i]
            for i in range(1, len(newest) + 1)
            if sum(m.startswith(newest[:i]) for m in made) == 1
        )
        one = await client.complete(METADATA, {"name": "image_id", "value": prefix})
        assert one.completion.values == [newest]
        upper = await client.complete(A_PROMPT, {"name": "id", "value": prefix.upper()})
        assert upper.completion.values == [newest]
        none = await client.complete(IMAGE, {"name": "image_id", "value": "1999"})
        assert none.completion.values == []


async def test_image_ids_are_capped_at_the_spec_limit(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server()) as client:
        for _ in range(MAX_VALUES // 4 + 1):
            await client.call_tool(
                "generate_image",
                {"prompt": "many", "num_images": 4, "width": 64, "height": 64},
            )
        answer = await client.complete(IMAGE, {"name": "image_id", "value": ""})
    assert len(answer.completion.values) == MAX_VALUES
    assert answer.completion.has_more


@pytest.mark.parametrize(
    ("argument", "typed", "expected"),
    [
        ("backend", "", ["fast", "leaky", "placeholder", "slow"]),
        ("backend", "S", ["slow"]),
        (
            "postprocess",
            "",
            [
                "border",
                "convert",
                "crop",
                "flip",
                "metadata",
                "resize",
                "rotate",
                "strip_metadata",
                "watermark",
                "web",
            ],
        ),
        ("step", "w", ["watermark", "web"]),
        ("output_format", "j", ["jpeg"]),
        ("style", "p", ["photo", "pixel-art", "product-shot"]),  # built-in styles
        ("prompt", "a", []),  # free text: nothing to suggest
    ],
)
async def test_configured_names_complete_by_prefix(
    make_server: Callable[..., ImageGenServer],
    argument: str,
    typed: str,
    expected: list[str],
) -> None:
    async with mcp.Client(make_server(CONFIGURED)) as client:
        answer = await client.complete(A_PROMPT, {"name": argument, "value": typed})
    assert answer.completion.values == expected
    assert answer.completion.total == len(expected)


async def test_the_server_declares_completions_and_logging(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server()) as client:
        capabilities = client.server_capabilities
    assert capabilities.completions is not None
    assert capabilities.logging is not None


async def test_the_instructions_name_every_tool_and_the_guidance(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server()) as client:
        instructions = client.instructions or ""
        tools = [tool.name for tool in (await client.list_tools()).tools]

    # The instructions are how a model learns what the server offers: a tool
    # added without a word there is one the model may never reach for.
    assert tools
    for name in [*tools, "style://list", "prompt-guide", "generation_id"]:
        assert name in instructions, name


def _enum(schema: dict[str, Any]) -> list[str]:
    for branch in schema.get("anyOf", [schema]):
        if "enum" in branch:
            return list(branch["enum"])
        if "items" in branch:
            return list(branch["items"]["enum"])
    raise AssertionError(f"no enum in {schema}")


async def test_tool_arguments_list_their_configured_values(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server(CONFIGURED)) as client:
        tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
    generate = tools["generate_image"]["properties"]
    assert _enum(generate["backend"]) == ["fast", "leaky", "placeholder", "slow"]
    assert _enum(generate["output_format"]) == ["png", "jpeg", "webp"]
    steps = _enum(generate["postprocess"])
    assert "web" in steps and "resize" in steps
    transform = tools["transform_image"]["properties"]
    assert _enum(transform["postprocess"]) == steps
    assert _enum(transform["output_format"]) == ["png", "jpeg", "webp"]

    async with mcp.Client(make_server()) as client:
        tools = {t.name: t.input_schema for t in (await client.list_tools()).tools}
    generate = tools["generate_image"]["properties"]
    assert _enum(generate["backend"]) == ["leaky", "placeholder"]
    assert "web" not in _enum(generate["postprocess"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            {"backend": "nope"},
            "Unknown backend 'nope'. Available: fast, leaky, placeholder, slow.",
        ),
        (
            {"output_format": "gif"},
            "Unknown output_format 'gif': use one of png, jpeg, webp.",
        ),
        ({"postprocess": ["nope"]}, "unknown post-processing step 'nope' (available: "),
    ],
)
async def test_a_value_outside_the_enum_gets_our_clear_error(
    make_server: Callable[..., ImageGenServer], arguments: dict[str, Any], message: str
) -> None:
    async with mcp.Client(make_server(CONFIGURED)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x", **arguments})
        text = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error
        assert message in text
        assert "pydantic" not in text
        # The server goes on serving.
        ok = await client.call_tool("generate_image", {"prompt": "x"})
        assert not ok.is_error


async def test_backend_list_resource_shows_what_list_backends_shows(
    make_server: Callable[..., ImageGenServer],
) -> None:
    async with mcp.Client(make_server(CONFIGURED)) as client:
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "backend://list" in listed
        read = await client.read_resource("backend://list")
        tool = await client.call_tool("list_backends", {})
    [contents] = read.contents
    assert contents.mime_type == "application/json"
    resource = json.loads(contents.text)  # type: ignore[union-attr]
    names = [b["name"] for b in resource["backends"]]
    assert names == [b["name"] for b in tool.structured_content["backends"]]  # type: ignore[index]
    assert set(names) == {"fast", "placeholder", "slow", "leaky"}
    by_name = {b["name"]: b for b in resource["backends"]}
    assert by_name["placeholder"]["default"] is True
    assert by_name["placeholder"]["health"]["status"] == "ok"
    # Health is checked, as by the tool (nothing listens where "leaky" points).
    assert by_name["leaky"]["health"]["status"] == "unavailable"
