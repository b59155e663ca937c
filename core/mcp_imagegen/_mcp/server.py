"""The MCP server: its lifespan runs the service; each part adds its tools."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import ServerMiddleware
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import (
    CompleteRequestParams,
    GetPromptResult,
    Icon,
    InputRequiredResult,
    ResourceTemplate,
    SetLevelRequestParams,
    ToolAnnotations,
)
from pydantic import AnyUrl

from mcp_imagegen import __version__
from mcp_imagegen._mcp import (
    app,
    backends,
    completions,
    editing,
    gallery,
    generation,
    guidance,
    resources,
)
from mcp_imagegen._mcp.audit import ToolCallLog
from mcp_imagegen._mcp.client_logging import ClientLogHub
from mcp_imagegen._mcp.content import ImageLink
from mcp_imagegen._mcp.tools import has_tool, service_of
from mcp_imagegen._service import ImageService
from mcp_imagegen._tasks import TaskManager
from mcp_imagegen._tasks.extension import TasksExtension
from mcp_imagegen._tasks.protocol import TasksMiddleware

log = structlog.get_logger("mcp_imagegen._mcp")

INSTRUCTIONS = (
    "Generates and edits images. generate_image makes images from a text "
    "prompt; edit_image repaints a stored image (or a data: URI) from a "
    "prompt, optionally only where a mask is white; ingest_image stores an "
    "outside image for editing; transform_image applies post-processing steps. "
    "Each image is stored and returned as a preview, an image:// resource link "
    "and a path or URL; list_images / get_image / delete_image manage them; "
    "list_backends shows the backends. The style argument applies a named "
    "look (see the style://list resource); the prompt-guide prompt explains "
    "how to prompt and what this server offers. A long call may answer with "
    "a generation_id instead of images: call get_generation with it for the "
    "status and, once done, the result."
)


class ImageGenServer(MCPServer[ImageService]):
    """MCPServer whose image resources are read from storage.

    Attributes:
        service: the service the lifespan starts; tools and resources reach it
            through the request's lifespan context.
        image_link: turns an image id into a network link for tool results
            whose storage has none of its own (over HTTP with ``public_url``).
        tasks: runs MCP tasks and long generations (started by the lifespan).
    """

    def __init__(
        self,
        service: ImageService,
        image_link: ImageLink | None = None,
        tasks: TaskManager | None = None,
        **kwargs: Any,
    ) -> None:
        self.service = service
        self.image_link = image_link
        self.tasks = tasks
        super().__init__(**kwargs)

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[ImageService, Any] | None = None
    ) -> Iterable[ReadResourceContents]:
        """Serve ``image://<id>`` (bytes, real mime type) and its ``/metadata``.

        A template's mime type is fixed, while a stored image is png, jpeg or
        webp: image URIs are read here so each answers with its own type.
        """
        match = resources.IMAGE_URI.match(str(uri))
        if match is None:
            return await super().read_resource(uri, context)  # type: ignore[return-value]
        service = self.service if context is None else service_of(context)
        return await resources.read_image(
            service, match["id"], metadata=bool(match["metadata"])
        )

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        context: Context[ImageService, Any] | None = None,
    ) -> GetPromptResult | InputRequiredResult:
        """Render a prompt; an unknown prompt or missing argument is -32602."""
        await guidance.check_prompt_request(self, name, arguments)
        return await super().get_prompt(name, arguments, context)

    async def list_resource_templates(self) -> list[ResourceTemplate]:
        """The templates; ``image://{image_id}`` claims no single mime type."""
        return [
            template.model_copy(update={"mime_type": None})
            if template.uri_template == resources.IMAGE_TEMPLATE
            else template
            for template in await super().list_resource_templates()
        ]

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        """Add a tool; those the gallery app renders carry its ``_meta.ui``."""
        super().add_tool(
            fn,
            name=name,
            title=title,
            description=description,
            annotations=annotations,
            icons=icons,
            meta=app.tool_meta(name or fn.__name__, meta),
            structured_output=structured_output,
        )


def _lifespan(
    service: ImageService, tasks: TaskManager, client_logs: ClientLogHub
) -> Callable[[MCPServer[ImageService]], AbstractAsyncContextManager[ImageService]]:
    """The server's lifespan: starts and stops ``service`` and ``tasks``."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[ImageService]) -> AsyncIterator[ImageService]:
        # Broadcasting first: the service's background tasks inherit it.
        async with client_logs.broadcasting(), service, tasks:
            # Expired task records go with the retention loop's sweeps.
            service.retention.task_store = tasks.store
            log.info(
                "server_started",
                backends=sorted(service.backends),
                storage=service.storage.name,
                task_store=type(tasks.store).__name__,
            )
            yield service

    return lifespan


def build_mcp_server(
    service: ImageService,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    middleware: Sequence[ServerMiddleware[Any]] = (),
    image_link: ImageLink | None = None,
    *,
    http: bool = False,
) -> ImageGenServer:
    """Create the MCP server with every tool and resource over ``service``.

    The tools' argument schemas are built from ``service``'s configuration and
    its loaded backends and steps; the server's lifespan starts and stops
    ``service`` and hands it to each request. ``token_verifier``, ``auth`` and
    ``middleware`` come from the composition root for HTTP with
    ``[server.auth]``: a token on every request, a scope per tool and resource.
    ``image_link`` (HTTP with ``public_url``) links results of a storage that
    has no URLs of its own (``file://``) to the server's ``/images/{id}``.
    ``http`` lets ``server.tasks.store = "auto"`` keep task records on the
    storage, where every replica finds them.
    """
    tasks = TaskManager(service.settings.server.tasks, service.storage, http=http)
    client_logs = ClientLogHub()
    built: dict[str, MCPServer[ImageService]] = {}
    server = ImageGenServer(
        service,
        image_link,
        tasks,
        name=service.settings.server.name,
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=_lifespan(service, tasks, client_logs),
        log_level="WARNING",
        token_verifier=token_verifier,
        auth=auth,
        # Innermost: a task is created only for a call the others let through.
        middleware=[
            # Outermost: calls refused for their scope are logged too.
            ToolCallLog(is_tool=lambda name: has_tool(built["server"], name)),
            *middleware,
            client_logs,
            TasksMiddleware(tasks, generation.TASK_TOOLS),
        ],
        extensions=[
            app.extension(service, built),
            TasksExtension(tasks, generation.TASK_TOOLS),
        ],
    )
    # logging/setLevel (2025-11-25 and older; declares the logging capability).
    # The SDK's MCPServer has no option for it; the low-level server's public
    # add_request_handler is the supported way (as for resources/list).
    server._lowlevel_server.add_request_handler(
        "logging/setLevel", SetLevelRequestParams, client_logs.set_level
    )
    server._lowlevel_server.add_request_handler(
        "completion/complete", CompleteRequestParams, completions.complete
    )
    built["server"] = server
    generation.register(server, service)
    gallery.register(server, service)
    backends.register(server, service)
    resources.register(server)
    guidance.register(server, service)
    editing.register(server, service)
    return server
