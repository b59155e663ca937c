"""What every tool module shares: registration, the service, error mapping.

Tool functions are module-level and take the service from the lifespan context.
What they accept depends on the live configuration (size bounds, loaded steps
and backends), so :func:`add_tool` registers, per server, a copy of a tool
whose parameters carry fields built from that configuration: what the model
sees is what this server accepts.
"""

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

import structlog
from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from mcp_imagegen._mcp.content import ImageLink
from mcp_imagegen._service import ImageService
from mcp_imagegen.errors import MCPImageError

log = structlog.get_logger("mcp_imagegen._mcp")

#: The context a tool or resource receives; its lifespan context is the service.
ToolContext = Context[ImageService, Any]


def service_of(ctx: ToolContext) -> ImageService:
    """The service the server's lifespan started, for this request.

    Raises:
        ValueError: when ``ctx`` belongs to no request.
    """
    return ctx.request_context.lifespan_context


def link_of(ctx: ToolContext) -> ImageLink | None:
    """The network link for images the server was given, if any (HTTP only)."""
    # Read by name: ``server`` (which defines ImageGenServer) imports this module.
    link: ImageLink | None = getattr(ctx.mcp_server, "image_link", None)
    return link


#: What logs and metrics name a call of something that is no registered tool:
#: callers choose the name, and it stays out of log lines and metric labels
#: (one time series per made-up name would grow without bound).
UNKNOWN_TOOL = "unknown"


def called_tool(
    ctx: ServerRequestContext[Any, Any], is_tool: Callable[[str], bool]
) -> str | None:
    """The tool a ``tools/call`` request calls, or None for any other request.

    A name ``is_tool`` does not know is :data:`UNKNOWN_TOOL`.
    """
    if ctx.method != "tools/call" or ctx.request_id is None:
        return None
    name = ctx.params.get("name") if ctx.params else None
    return name if isinstance(name, str) and is_tool(name) else UNKNOWN_TOOL


def is_error_result(result: HandlerResult | None) -> bool:
    """Whether a tool call's result is an error result (``isError``)."""
    if isinstance(result, BaseModel):
        return getattr(result, "is_error", None) is True
    if isinstance(result, Mapping):
        return result.get("isError") is True
    return False


def has_tool(server: MCPServer[Any], name: str) -> bool:
    """Whether ``server`` has a tool called ``name`` (plugins' tools too).

    The SDK has no public lookup short of listing every tool; its tool manager's
    is the one the SDK itself calls for ``tools/call``.
    """
    return server._tool_manager.get_tool(name) is not None


def add_tool(
    server: MCPServer[ImageService],
    fn: Callable[..., Any],
    annotations: ToolAnnotations,
    fields: Mapping[str, FieldInfo] | None = None,
) -> None:
    """Register ``fn`` with its docstring, dedented, as the description.

    Args:
        server: the server to add the tool to.
        fn: a module-level async tool function.
        annotations: the tool's hints (read-only, destructive, ...).
        fields: per-parameter fields (description, schema keywords) built from
            the configuration; each wraps that parameter's annotation.
    """
    description = inspect.cleandoc(fn.__doc__ or "")
    tool = _with_fields(fn, fields) if fields else fn
    server.add_tool(tool, description=description, annotations=annotations)


def _with_fields(
    fn: Callable[..., Any], fields: Mapping[str, FieldInfo]
) -> Callable[..., Any]:
    """A wrapper of ``fn`` whose signature annotates parameters with ``fields``.

    The SDK reads a tool's schema from its signature (and its type hints, to
    find the Context parameter), so both are set; ``fn`` itself is shared by
    every server and stays untouched.
    """
    signature = inspect.signature(fn)
    unknown = set(fields) - set(signature.parameters)
    if unknown:
        raise TypeError(f"{fn.__name__} has no parameters {sorted(unknown)}")
    parameters = [
        p.replace(annotation=Annotated[p.annotation, fields[p.name]])
        if p.name in fields
        else p
        for p in signature.parameters.values()
    ]

    @functools.wraps(fn)
    async def tool(**arguments: Any) -> Any:
        return await fn(**arguments)

    tool.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    tool.__annotations__ = {p.name: p.annotation for p in parameters}
    tool.__annotations__["return"] = signature.return_annotation
    return tool


@contextmanager
def tool_errors(operation: str) -> Iterator[None]:
    """Turn our errors into tool errors; report crashes without internals.

    An anticipated failure (:class:`MCPImageError`) becomes a tool error with
    its own message; anything else is logged with its traceback and reported
    as an internal error, the server going on serving.
    """
    try:
        yield
    except MCPImageError as exc:
        log.info(
            "tool_failed", tool=operation, error_type=type(exc).__name__, error=str(exc)
        )
        raise ToolError(str(exc)) from None
    except ToolError:
        raise
    except Exception:
        log.exception("tool_crashed", tool=operation)
        raise ToolError(
            f"{operation} failed because of an internal error; the server log has "
            "the details. The server is still running."
        ) from None
