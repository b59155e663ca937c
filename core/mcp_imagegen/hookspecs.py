"""Hook specifications: how plugins extend mcp-imagegen.

Each ``register_*`` hook receives a ``register`` callable; call it once per
component *class* your plugin provides. Components are instantiated by the core,
one per configured table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mcp_imagegen.interfaces import (
        ImageServiceAPI,
        ImageStorage,
        InferenceBackend,
        PostProcessor,
    )
    from mcp_imagegen.models import ImageRecord, Style

hookspec = pluggy.HookspecMarker("mcp_imagegen")
hookimpl = pluggy.HookimplMarker("mcp_imagegen")


# -- component registration ----------------------------------------------------


@hookspec
def register_backends(register: Callable[[type[InferenceBackend]], None]) -> None:
    """Register inference backend types, e.g. ``register(KServeBackend)``."""


@hookspec
def register_storages(register: Callable[[type[ImageStorage]], None]) -> None:
    """Register storage types, e.g. ``register(S3Storage)``."""


@hookspec
def register_postprocessors(register: Callable[[type[PostProcessor]], None]) -> None:
    """Register post-processor types, e.g. ``register(ResizeStep)``."""


@hookspec
def register_styles(register: Callable[[str, Style], None]) -> None:
    """Contribute styles: ``register("neon", Style(prompt="neon sign of {prompt}"))``.

    A style is offered as generate_image's ``style`` argument and as an MCP
    prompt. A ``[styles.<name>]`` table of the same name overrides the keys it
    sets; two plugins registering one name is an error naming both.
    """


# -- MCP surface ---------------------------------------------------------------


@hookspec
def register_tools(server: MCPServer[Any], service: ImageServiceAPI) -> None:
    """Add MCP tools to ``server`` once the service is built (before serving).

    ``service`` is the running image service, seen through its public
    interface :class:`~mcp_imagegen.interfaces.ImageServiceAPI`.
    """


# -- events --------------------------------------------------------------------


@hookspec
def image_stored(record: ImageRecord) -> Awaitable[None] | None:
    """Called after an image was stored; may return an awaitable, which is awaited.

    Exceptions are logged and never fail the request that stored the image.
    """
