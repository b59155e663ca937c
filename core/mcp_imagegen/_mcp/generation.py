"""Tools that make images: ``generate_image``, ``transform_image``, and the fallback.

:class:`Background` is the fallback for clients without tasks, shared with
``edit_image``.
"""

# No ``from __future__ import annotations``: the SDK reads these signatures
# (and their Context parameter) as evaluated objects.

from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
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
from mcp_imagegen._tasks import TaskManager, TaskNotFoundError
from mcp_imagegen._tasks.manager import current_task_id, report_status
from mcp_imagegen._tasks.protocol import principal
from mcp_imagegen.models import StoredImage, TaskRecord

#: Tools whose calls may run as MCP tasks.
TASK_TOOLS = ("generate_image", "transform_image", "edit_image")


class Background:
    """One call of a tool whose work may go on after the call answered.

    The one fallback for clients without tasks, shared by the image-making
    tools: :meth:`call` runs the work as the server's task, waits at most
    ``server.tasks.sync_wait`` (none with ``wait=False``) and then answers with
    the result or with the generation id for ``get_generation``.
    :meth:`report` is the work's progress reporter: the task's status message,
    and MCP progress while the caller still waits.

    Args:
        ctx: The tool call's context.
        tool: The tool's name (errors and task records name it).
    """

    def __init__(self, ctx: ToolContext, tool: str) -> None:
        self.ctx = ctx
        self.tool = tool
        #: Set once the call answered that the work continues.
        self.detached = False

    async def report(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Report progress (a ``ProgressReporter``)."""
        if message:
            report_status(message)
        if not self.detached:
            # The caller may have gone (disconnected, or was answered that the
            # generation continues): the work goes on regardless.
            with suppress(Exception):
                await self.ctx.report_progress(done, total, message)

    async def call(
        self, run: Callable[[], Awaitable[CallToolResult]], *, wait: bool = True
    ) -> CallToolResult:
        """The tool's answer: ``run``'s result, or that it continues."""
        tasks = _tasks_of(self.ctx)
        if tasks is None or current_task_id() is not None:
            # Already a task's work (a task-augmented call), or no runner.
            return await run()
        with tool_errors(self.tool):
            record = await tasks.start(
                self.tool,
                lambda: _as_json(run),
                owner=principal(self.ctx.request_context),
                detached=False,
            )
        timeout = tasks.settings.sync_wait.total_seconds() if wait else 0.0
        done = await tasks.wait_local(record.task_id, timeout)
        if done is not None:
            return _finished(done)
        self.detached = True
        return _continues(await tasks.get(record.task_id, record.owner), tasks)


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
    wait: bool = True,
) -> Annotated[CallToolResult, GenerateResult]:
    """Generate images from a text prompt and store them.

    Returns each image as a preview, an image:// resource link and its path or URL.
    A generation that takes long goes on in the background: the result then says
    so with a generation_id; get_generation(generation_id) returns its images later.
    """
    service = service_of(ctx)
    background = Background(ctx, "generate_image")

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

    async def run() -> CallToolResult:
        with tool_errors("generate_image"):
            stored = await service.generate(
                request,
                background.report,
                backend=styled.backend,
                postprocess=styled.postprocess,
                output_format=output_format,
            )
            return await images_result(ctx, stored, inline)

    return await background.call(run, wait=wait)


async def get_generation(
    generation_id: Annotated[
        str,
        Field(description="The generation_id a generate_image result gave."),
    ],
    ctx: ToolContext,
) -> Annotated[CallToolResult, GenerateResult]:
    """Get a generation that went on in the background.

    While it runs: its status. Once done: exactly what generate_image returns.
    """
    tasks = _tasks_of(ctx)
    if tasks is None:
        raise ToolError("get_generation: this server runs no background generations")
    with tool_errors("get_generation"):
        try:
            record = await tasks.get(generation_id, principal(ctx.request_context))
        except TaskNotFoundError:
            raise ToolError(
                f"generation_id: no generation {generation_id} (unknown, expired "
                "after server.tasks.ttl, or not yours)"
            ) from None
    if record.status == "working":
        return _continues(record, tasks)
    return _finished(record)


def _tasks_of(ctx: ToolContext) -> TaskManager | None:
    # Read by name: ``server`` (which defines ImageGenServer) imports this module.
    tasks: TaskManager | None = getattr(ctx.mcp_server, "tasks", None)
    return tasks


async def _as_json(run: Any) -> dict[str, Any]:
    """A tool's result as the JSON a task keeps; a tool error as an error result."""
    try:
        result: CallToolResult = await run()
    except ToolError as exc:
        result = CallToolResult(
            content=[TextContent(type="text", text=str(exc))], is_error=True
        )
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def _finished(record: TaskRecord) -> CallToolResult:
    """What the call returned, for a finished generation."""
    if record.status == "cancelled":
        raise ToolError(f"generation {record.task_id} was cancelled; it made no images")
    if record.result is None:
        raise ToolError(f"generation {record.task_id} failed: {record.status_message}")
    result = CallToolResult.model_validate(record.result)
    if result.is_error:
        # Raised again, the SDK words it as it words the tool's own errors.
        raise ToolError(
            " ".join(c.text for c in result.content if isinstance(c, TextContent))
        )
    return result


def _continues(record: TaskRecord, tasks: TaskManager) -> CallToolResult:
    """The answer for a generation still running: its id and how to get it."""
    text = (
        f"The generation continues in the background as {record.task_id} "
        f"(status: {record.status_message or record.status}). Call get_generation "
        f'with generation_id "{record.task_id}" to get its images once done '
        f"(try again in a few seconds); it is kept for "
        f"{record.ttl_ms // 1000} s."
    )
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=GenerateResult(
            images=[], generation_id=record.task_id, status="working"
        ).model_dump(mode="json", exclude_none=True),
    )


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

    async def run() -> CallToolResult:
        with tool_errors("transform_image"):
            image = await service.transform(image_id, postprocess, output_format)
            return await images_result(ctx, [image], inline)

    # A transform is quick, yet the same fallback keeps a slow storage from
    # outlasting the client's wait.
    return await Background(ctx, "transform_image").call(run)


async def images_result(
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
        # The two fields of a generation still running stay out of finished ones.
        structured_content=GenerateResult(images=infos).model_dump(
            mode="json", exclude={"generation_id", "status"}
        ),
    )


def _generate_fields(service: ImageService) -> dict[str, FieldInfo]:
    limits, defaults = service.settings.limits, service.settings.generation
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
        "seed": fields.seed(" Image i of the call uses seed + i."),
        "steps": Field(
            description=f"Inference steps (1-{limits.max_steps}); more is "
            "slower and usually finer. Omit for the backend's default.",
            json_schema_extra=fields.number_schema(minimum=1, maximum=limits.max_steps),
        ),
        "guidance_scale": fields.guidance_scale(),
        "backend": Field(
            description="Backend instance (see list_backends); default "
            f"'{defaults.backend}'.",
            json_schema_extra=fields.enum_schema(sorted(service.backends)),
        ),
        "output_format": fields.output_format(service),
        "postprocess": fields.chain(service),
        "inline": fields.inline(service),
        "style": fields.style(service),
        "wait": fields.wait(service, "the images"),
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
    add_tool(
        server,
        get_generation,
        ToolAnnotations(
            title="Get generation",
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
