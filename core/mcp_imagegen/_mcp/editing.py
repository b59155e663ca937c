"""Tools that take images in: ``edit_image`` and ``ingest_image``."""

# No ``from __future__ import annotations``: the SDK reads these signatures
# (and their Context parameter) as evaluated objects.

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field
from pydantic.fields import FieldInfo

from mcp_imagegen._mcp import fields
from mcp_imagegen._mcp.content import GenerateResult, Inline
from mcp_imagegen._mcp.generation import Background, images_result
from mcp_imagegen._mcp.tools import (
    ToolContext,
    add_tool,
    service_of,
    tool_errors,
)
from mcp_imagegen._service import ImageService


async def edit_image(
    image: str,
    prompt: Annotated[str, Field(description="What the edited image should show.")],
    ctx: ToolContext,
    mask: str | None = None,
    strength: float = 0.6,
    negative_prompt: Annotated[
        str | None,
        Field(description="What the image should not show (if the backend can)."),
    ] = None,
    seed: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    backend: str | None = None,
    output_format: str | None = None,
    postprocess: list[str] | None = None,
    inline: Inline = "preview",
    style: str | None = None,
    wait: bool = True,
) -> Annotated[CallToolResult, GenerateResult]:
    """Edit an existing image from a prompt: a variation, or inpainting with a mask.

    The result is stored as a new image (the input is never changed) and
    returned like generate_image's; its source_image_id or origin names the input.
    A long edit goes on in the background as generate_image's does
    (generation_id, get_generation).
    """
    service = service_of(ctx)
    background = Background(ctx, "edit_image")

    with tool_errors("edit_image"):
        # The one resolution of styles, as generate_image's; only the size is
        # not taken from the style: an edit keeps its input's shape.
        styled = service.apply_style(
            style,
            prompt=prompt,
            negative_prompt=negative_prompt,
            steps=steps,
            guidance_scale=guidance_scale,
            backend=backend,
            postprocess=postprocess,
        )

    async def run() -> CallToolResult:
        with tool_errors("edit_image"):
            stored = await service.edit(
                image,
                styled.prompt,
                mask=mask,
                strength=strength,
                negative_prompt=styled.negative_prompt,
                seed=seed,
                steps=styled.steps,
                guidance_scale=styled.guidance_scale,
                width=width,
                height=height,
                backend=styled.backend,
                postprocess=styled.postprocess,
                output_format=output_format,
                progress=background.report,
                style=styled.style,
            )
            return await images_result(ctx, [stored], inline)

    return await background.call(run, wait=wait)


async def ingest_image(
    ctx: ToolContext,
    data: str | None = None,
    url: str | None = None,
    path: str | None = None,
    inline: Inline = "none",
) -> Annotated[CallToolResult, GenerateResult]:
    """Store an outside image so it can be edited, transformed and listed.

    Give exactly one of data, url or path. The image is stored as it is.
    """
    with tool_errors("ingest_image"):
        stored = await service_of(ctx).ingest(data=data, url=url, path=path)
        return await images_result(ctx, [stored], inline)


def _sources(service: ImageService) -> str:
    """The image sources this server accepts, for argument descriptions."""
    inputs = service.settings.inputs
    sources = [
        "a stored image id",
        "an image://{id} URI",
        f"a data:image/...;base64, URI (at most {inputs.max_bytes} bytes)",
    ]
    if inputs.allowed_dirs:
        sources.append("an absolute path under the configured directories")
    if inputs.allowed_hosts:
        hosts = ", ".join(inputs.allowed_hosts)
        sources.append(f"an http(s) URL on {hosts}")
    return ", ".join(sources[:-1]) + " or " + sources[-1]


def _edit_fields(service: ImageService) -> dict[str, FieldInfo]:
    defaults = service.settings.generation
    sources = _sources(service)
    styled = fields.style(service)
    style: FieldInfo = Field(
        description=f"{styled.description} An edit keeps its input's size.",
        json_schema_extra=styled.json_schema_extra,
    )
    return {
        "image": Field(description=f"The image to edit: {sources}."),
        "mask": Field(
            description="Inpainting mask, same forms as image: white = repaint, "
            "black = keep. Of the image's size (resized with it) or of "
            "width x height. Omit to change the whole image."
        ),
        "strength": Field(
            description="How far to move away from the image: 0 keeps it, 1 "
            "ignores it; default 0.6.",
            json_schema_extra=fields.number_schema(minimum=0, maximum=1),
        ),
        "seed": fields.seed(),
        "steps": Field(
            description="Inference steps; omit for the backend's default.",
            json_schema_extra=fields.number_schema(
                minimum=1, maximum=service.settings.limits.max_steps
            ),
        ),
        "guidance_scale": fields.guidance_scale(),
        "width": Field(
            description="Width of the result; default the input's (fitted to the "
            "limits, rounded to the side multiple; a lone height keeps the "
            "aspect ratio)."
        ),
        "height": Field(description="Height of the result; default as width."),
        "backend": Field(
            description="Backend instance that takes image input (see "
            f"list_backends: image_input, mask); default '{defaults.backend}'.",
            json_schema_extra=fields.enum_schema(sorted(service.backends)),
        ),
        "output_format": fields.output_format(service),
        "postprocess": fields.chain(service),
        "inline": fields.inline(service),
        "style": style,
        "wait": fields.wait(service, "the image"),
    }


def register(server: MCPServer[ImageService], service: ImageService) -> None:
    """Add ``edit_image`` and ``ingest_image``, schemas built from ``service``."""
    add_tool(
        server,
        edit_image,
        ToolAnnotations(
            title="Edit image",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
        _edit_fields(service),
    )
    inputs = service.settings.inputs
    ingest: dict[str, FieldInfo] = {
        "data": Field(
            description="The image as a data:image/...;base64, URI (or plain "
            f"base64), at most {inputs.max_bytes} bytes."
        ),
        "url": Field(
            description="An http(s) URL to fetch the image from"
            + (
                f" (hosts: {', '.join(inputs.allowed_hosts)})."
                if inputs.allowed_hosts
                else "; off on this server (inputs.allowed_hosts is empty)."
            )
        ),
        "path": Field(
            description="An absolute path of an image file on the server"
            + (
                " under the configured directories."
                if inputs.allowed_dirs
                else "; off on this server (inputs.allowed_dirs is empty)."
            )
        ),
        "inline": fields.inline(service),
    }
    add_tool(
        server,
        ingest_image,
        ToolAnnotations(
            title="Ingest image",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
        ingest,
    )
