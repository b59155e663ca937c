"""A plugin package contributing a style through ``register_styles``.

The plugin is a real distribution (package + ``.dist-info`` with an
``mcp_imagegen`` entry point) on ``sys.path`` or ``PYTHONPATH``, discovered by
``importlib.metadata`` like any installed plugin.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import TextContent, TextResourceContents

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import PluginManager
from mcp_imagegen.errors import ConfigurationError, PluginError
from tests.conftest import MCP_IMAGEGEN_BIN
from tests.guidance.conftest import write_plugin

pytestmark = pytest.mark.anyio

NEON_PROMPT = "neon sign of a cat, glowing tubes, dark brick wall"


async def test_a_plugin_style_is_offered_applied_and_recorded(
    installed: Callable[[Path], PluginManager],
    plugin_site: Path,
    make_settings: Callable[..., Settings],
) -> None:
    plugins = installed(plugin_site)
    server = create_server(make_settings(), plugins)

    async with mcp.Client(server) as client:
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        result = await client.call_tool(
            "generate_image", {"prompt": "a cat", "style": "neon"}
        )
        styles = await client.read_resource("style://list")

    assert "neon" in prompts
    assert result.structured_content is not None
    [image] = result.structured_content["images"]
    assert image["prompt"] == NEON_PROMPT
    assert image["negative_prompt"] == "daylight"
    assert (image["width"], image["height"]) == (128, 64)
    assert image["guidance_scale"] == 8.0
    assert image["style"] == "neon"
    [contents] = styles.contents
    assert isinstance(contents, TextResourceContents)
    assert "neon" in {s["name"] for s in json.loads(contents.text)["styles"]}
    info = {p.name: p for p in plugins.plugins()}["imagegen_neon"]
    assert info.distribution == "imagegen-neon"
    assert "register_styles" in info.hooks


async def test_a_table_overrides_a_plugin_style(
    installed: Callable[[Path], PluginManager],
    plugin_site: Path,
    make_settings: Callable[..., Settings],
) -> None:
    plugins = installed(plugin_site)
    settings = make_settings({"styles": {"neon": {"width": 64}}})

    async with mcp.Client(create_server(settings, plugins)) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "a cat", "style": "neon"}
        )

    assert result.structured_content is not None
    [image] = result.structured_content["images"]
    assert (image["width"], image["height"]) == (64, 64)
    assert image["prompt"] == NEON_PROMPT


def test_a_plugin_style_naming_an_unknown_backend_names_the_plugin(
    installed: Callable[[Path], PluginManager],
    tmp_path: Path,
    make_settings: Callable[..., Settings],
) -> None:
    source = """
        from mcp_imagegen import Style, hookimpl

        @hookimpl
        def register_styles(register):
            register("remote", Style(prompt="{prompt}", backend="sdxl"))
    """
    plugins = installed(write_plugin(tmp_path / "s", "imagegen_remote", source))

    with pytest.raises(ConfigurationError) as caught:
        create_server(make_settings(), plugins)

    assert "styles.remote.backend: no backend instance named 'sdxl'" in str(
        caught.value
    )
    assert "[plugin 'imagegen_remote' (from imagegen-remote 1.0)]" in str(caught.value)


def test_two_plugins_registering_one_style_name_is_an_error_naming_both(
    installed: Callable[[Path], PluginManager],
    plugin_site: Path,
    make_settings: Callable[..., Settings],
) -> None:
    source = """
        from mcp_imagegen import Style, hookimpl

        @hookimpl
        def register_styles(register):
            register("neon", Style(prompt="another neon {prompt}"))
    """
    write_plugin(plugin_site, "imagegen_neon_two", source)
    plugins = installed(plugin_site)

    with pytest.raises(PluginError) as caught:
        create_server(make_settings(), plugins)

    message = str(caught.value)
    assert "style 'neon' is already registered" in message
    assert "imagegen_neon" in message and "imagegen_neon_two" in message


def test_a_plugin_registering_a_table_instead_of_a_style_is_told_what_to_pass(
    plugin_manager: PluginManager, make_settings: Callable[..., Settings]
) -> None:
    from mcp_imagegen import hookimpl

    class Careless:
        @hookimpl
        def register_styles(self, register: Callable[..., None]) -> None:
            register("neon", {"prompt": "neon {prompt}"})

    plugin_manager.register(Careless(), name="careless")

    with pytest.raises(PluginError, match=r"register\(name: str, style: mcp_imag"):
        create_server(make_settings(), plugin_manager)


async def test_a_plugin_style_over_stdio(
    plugin_site: Path, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=str(MCP_IMAGEGEN_BIN),
        args=["serve"],
        env={**subprocess_env, "PYTHONPATH": str(plugin_site)},
        cwd=str(tmp_path / "work"),
    )
    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(60):
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            prompts = {p.name for p in (await session.list_prompts()).prompts}
            got = await session.get_prompt("neon", {"subject": "a cat"})
            guide = await session.get_prompt("prompt-guide", {})
            result: Any = await session.call_tool(
                "generate_image", {"prompt": "a cat", "style": "neon"}
            )

    assert {"neon", "watercolor", "photo", "prompt-guide"} <= prompts
    [message] = got.messages
    assert isinstance(message.content, TextContent)
    assert 'style="neon"' in message.content.text
    [guide_message] = guide.messages
    assert isinstance(guide_message.content, TextContent)
    assert "- neon: Glowing neon sign on a dark brick wall." in (
        guide_message.content.text
    )
    assert not result.is_error, result
    [image] = result.structured_content["images"]
    assert image["style"] == "neon"
    assert image["prompt"] == NEON_PROMPT
