"""Tools that make images: ``generate_image`` and ``transform_image``."""

# No ``from __future__ import annotations``: the SDK reads these signatures
# (and their Context parameter) as evaluated objects.

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field
from pydantic.fields import FieldInfo

from mcp_imagegen._mcp import fields
from mcp_imagegen._mcp.content import GenerateResult, Inline, image_content
from mcp_imagegen._mcp.tools import (
    ToolContext,
    add_tool,
    link_of,
    service_of,
    tool_errors,
)
from mcp_imagegen._service import ImageService
from mcp_imagegen.models import StoredImage


async def generate_image(
    prompt: Annotated[str, Field(description="What the image should show.")],
    ctx: ToolContext,
    negative_prompt: Annotated[
        str | None,
        Field(description="What the image should not show (if the backend can)."),
    ] = None,
    width: int | None = None,
    height: int | None = None,
    num_images: int | None = None,
    seed: int | None = None,
    steps: int | None = None,
    guidance_scale: float | None = None,
    backend: str | None = None,
    output_format: str | None = None,
    postprocess: list[str] | None = None,
    inline: Inline = "preview",
    style: str | None = None,
) -> Annotated[CallToolResult, GenerateResult]:
    """Generate images from a text prompt and store them.

    Returns each image as a preview, an image:// resource link and its path or URL.
    """
    service = service_of(ctx)

    async def report(
        done: float, total: float | None = None, message: str | None = None
    ) -> None:
        await ctx.report_progress(done, total, message)

    with tool_errors("generate_image"):
        styled = service.apply_style(
            style,
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            steps=steps,
            guidance_scale=guidance_scale,
            backend=backend,
            postprocess=postprocess,
        )
        request = service.settings.generation.request(
            styled.prompt,
            negative_prompt=styled.negative_prompt,
            width=styled.width,
            height=styled.height,
            num_images=num_images,
            seed=seed,
            steps=styled.steps,
            guidance_scale=styled.guidance_scale,
            style=styled.style,
        )
        stored = await service.generate(
            request,
            report,
            backend=styled.backend,
            postprocess=styled.postprocess,
            output_format=output_format,
        )
        return await _result(ctx, stored, inline)


async def transform_image(
    image_id: Annotated[str, Field(description="Id of the stored image to transform.")],
    postprocess: list[str],
    ctx: ToolContext,
    output_format: str | None = None,
    inline: Inline = "preview",
) -> Annotated[CallToolResult, GenerateResult]:
    """Apply post-processing steps to a stored image, storing a new image.

    The original image is never changed.
    """
    service = service_of(ctx)
    with tool_errors("transform_image"):
        image = await service.transform(image_id, postprocess, output_format)
        return await _result(ctx, [image], inline)


async def _result(
    ctx: ToolContext, stored: list[StoredImage], inline: Inline
) -> CallToolResult:
    """The tool result for images a call just stored."""
    content, infos = await image_content(
        service_of(ctx),
        [(image.record, image.data) for image in stored],
        inline,
        link_of(ctx),
    )
    return CallToolResult(
        content=content,
        structured_content=GenerateResult(images=infos).model_dump(mode="json"),
    )


def _generate_fields(service: ImageService) -> dict[str, FieldInfo]:
    limits, defaults = service.settings.limits, service.settings.generation
    chain = ", ".join(defaults.postprocess) or "none"
    return {
        "width": fields.side(service, "Width"),
        "height": fields.side(service, "Height"),
        "num_images": Field(
            description=f"How many images (1-{limits.max_images}); default "
            f"{defaults.num_images}.",
            json_schema_extra=fields.number_schema(
                minimum=1, maximum=limits.max_images
            ),
        ),
        "seed": Field(
            description="Seed for reproducible results; random if omitted. "
            "Image i of the call uses seed + i.",
            json_schema_extra=fields.number_schema(minimum=0, maximum=2**32 - 1),
        ),
        "steps": Field(
            description=f"Inference steps (1-{limits.max_steps}); more is "
            "slower and usually finer. Omit for the backend's default.",
            json_schema_extra=fields.number_schema(minimum=1, maximum=limits.max_steps),
        ),
        "guidance_scale": Field(
            description="How strictly to follow the prompt (0-50, typically "
            "5-9). Omit for the backend's default.",
            json_schema_extra=fields.number_schema(minimum=0, maximum=50),
        ),
        "backend": Field(
            description="Backend instance (see list_backends); default "
            f"'{defaults.backend}'.",
            json_schema_extra=fields.enum_schema(sorted(service.backends)),
        ),
        "output_format": fields.output_format(service),
        "postprocess": fields.steps(
            service,
            "Post-processing steps replacing the default chain "
            f"({chain}), in order; [] for none.",
        ),
        "inline": fields.inline(service),
        "style": fields.style(service),
    }


def register(server: MCPServer[ImageService], service: ImageService) -> None:
    """Add the generation tools, their schemas built from ``service``'s setup."""
    add_tool(
        server,
        generate_image,
        ToolAnnotations(
            title="Generate image",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
        _generate_fields(service),
    )
    transform: dict[str, FieldInfo] = {
        "postprocess": fields.steps(
            service, "Post-processing steps to apply, in order."
        ),
        "output_format": fields.output_format(service),
        "inline": fields.inline(service),
    }
    add_tool(
        server,
        transform_image,
        ToolAnnotations(
            title="Transform image",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=False,
        ),
        transform,
    )
