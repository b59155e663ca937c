"""The MCP App: an interactive gallery and editor hosts render beside tool results.

Clients that negotiate MCP Apps (the ``io.modelcontextprotocol/ui`` extension,
``mcp.server.apps`` in the SDK) render the ``ui://`` resource a tool's
``_meta.ui.resourceUri`` names. The SDK's :class:`~mcp.server.apps.Apps`
extension serves the resource and advertises the capability; the tools it is
bound to are registered by their own modules, so :func:`tool_meta` stamps the
same ``_meta.ui`` entry ``Apps.tool`` writes as they are added (bound by name:
a deployment without one of them simply has no entry for it).

The document itself (``mcp_imagegen/app/gallery.html``) is self-contained: its
script speaks the host bridge's postMessage JSON-RPC directly and reaches images
only through the host (``tools/call``, ``resources/read``). What it may offer
depends on this server, so each read fills in a small JSON configuration: the
bound tools that exist, the loaded post-processing steps and output formats, and
the styles' templates (a record holds the expanded prompt; regenerating with the
style again needs the caller's words back). The resource asks hosts for
``clipboard-write`` (``_meta.ui.permissions``) for its "Copy prompt".
Tool results are unchanged: clients without Apps see exactly what they saw.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from mcp.server.apps import APP_MIME_TYPE, Apps, ResourcePermissions
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.resources import FunctionResource

from mcp_imagegen._service import ImageService
from mcp_imagegen.models import OUTPUT_FORMATS

#: The gallery's resource URI, named by the bound tools' ``_meta.ui.resourceUri``.
GALLERY_URI = "ui://mcp-imagegen/gallery"
#: Tools whose results the gallery renders.
BOUND_TOOLS = frozenset(
    {"generate_image", "edit_image", "transform_image", "list_images"}
)
#: Tools the gallery calls through the host when the server has them.
APP_TOOLS = (
    "generate_image",
    "edit_image",
    "transform_image",
    "list_images",
    "get_image",
    "delete_image",
)
#: What the gallery asks the host's frame to allow: "Copy prompt" only.
PERMISSIONS = ResourcePermissions(clipboard_write={}).model_dump(
    by_alias=True, exclude_none=True
)
#: Where the document reads its configuration; the shipped file holds ``{}``.
CONFIG_SLOT = '<script type="application/json" id="config">{}</script>'


@cache
def gallery_template() -> str:
    """The shipped document, with an empty configuration slot."""
    html = files("mcp_imagegen").joinpath("app", "gallery.html").read_text("utf-8")
    if CONFIG_SLOT not in html:
        raise RuntimeError(f"gallery.html lost its configuration slot {CONFIG_SLOT!r}")
    return html


def render_gallery(config: dict[str, Any]) -> str:
    """The document with ``config`` in its slot.

    ``<`` is escaped so no value (a step name is the operator's text) can close
    the script element early.
    """
    data = json.dumps(config, sort_keys=True).replace("<", "\\u003c")
    return gallery_template().replace(CONFIG_SLOT, CONFIG_SLOT.replace("{}", data), 1)


def tool_meta(name: str, meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """``meta`` with the gallery's ``_meta.ui`` entry when ``name`` is bound to it.

    The entry is the one :meth:`mcp.server.apps.Apps.tool` writes.
    """
    if name not in BOUND_TOOLS:
        return meta
    return {**(meta or {}), "ui": {"resourceUri": GALLERY_URI}}


def extension(
    service: ImageService, server: dict[str, MCPServer[ImageService]]
) -> Apps:
    """The Apps extension serving the gallery for ``service``'s configuration.

    Args:
        service: whose loaded steps the gallery offers.
        server: holds the server under ``"server"`` once it is built (the
            extension is applied while it is constructed); each read asks it
            which tools exist.
    """

    async def page() -> str:
        names = {tool.name for tool in await server["server"].list_tools()}
        return render_gallery(
            {
                "tools": [name for name in APP_TOOLS if name in names],
                "steps": sorted(service.steps),
                "formats": list(OUTPUT_FORMATS),
                "styles": {
                    name: {
                        "prompt": style.prompt,
                        "negative_prompt": style.negative_prompt,
                    }
                    for name, style in sorted(service.styles.items())
                },
            }
        )

    apps = Apps()
    apps.add_resource(
        FunctionResource(
            uri=GALLERY_URI,
            name="gallery",
            title="Image gallery",
            description="Interactive gallery and editor of generated images "
            "(MCP Apps).",
            mime_type=APP_MIME_TYPE,
            # Hosts map this to the frame's ``allow="clipboard-write"``.
            meta={"ui": {"permissions": PERMISSIONS}},
            fn=page,
        )
    )
    return apps
