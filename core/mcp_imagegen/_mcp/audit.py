"""One ``tool_called`` log line per tool call: which tool, who called, how it ended.

For the operators of a shared server (who deleted this image? who made it?):
the ``client`` (over HTTP with ``[server.auth]``, the access token's subject or
client id, a static token's ``bearer:<fingerprint>``; none over stdio or without
authentication), the ``outcome`` (``ok``, ``error`` for an error result or a
refusal, ``cancelled``), ``duration_ms``, the ``image_ids`` the call named or
made, and a ``generation_id`` it named or started. Never the arguments' text:
prompts, data and URLs stay out. The line stays in the server's log: it is not
sent to clients (see :data:`mcp_imagegen._logs.SERVER_ONLY_EVENTS`), since
outside a request's own stream it would reach every connected client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import structlog
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from pydantic import BaseModel

from mcp_imagegen._ids import validate_image_id, validate_task_id
from mcp_imagegen._mcp.tools import called_tool, is_error_result
from mcp_imagegen._tasks.protocol import principal
from mcp_imagegen.errors import MCPImageError

log = structlog.get_logger("mcp_imagegen._mcp")

#: The event's name (kept out of client notifications by ``_logs``).
TOOL_CALLED = "tool_called"
#: Arguments that may name stored images (``edit_image``'s may also be data,
#: a URL or a path: only well-formed ids are logged).
_IMAGE_ARGUMENTS = ("image_id", "image", "mask")


class ToolCallLog:
    """MCP server middleware: logs every ``tools/call`` when it ends.

    Register it outermost, so that calls refused by other middleware (a missing
    scope) are logged too.

    Args:
        is_tool: Whether a name is a registered tool.
    """

    def __init__(self, is_tool: Callable[[str], bool]) -> None:
        self.is_tool = is_tool

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Pass the request on; log it if it is a tool call."""
        tool = called_tool(ctx, self.is_tool)
        if tool is None:
            return await call_next(ctx)
        arguments = (ctx.params or {}).get("arguments")
        named = arguments if isinstance(arguments, Mapping) else {}
        outcome, result = "error", None
        started = time.perf_counter()
        try:
            result = await call_next(ctx)
            outcome = "error" if is_error_result(result) else "ok"
            return result
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        finally:
            structured = _structured(result)
            log.info(
                TOOL_CALLED,
                tool=tool,
                outcome=outcome,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
                client=principal(ctx),
                image_ids=_image_ids(named, structured),
                generation_id=_generation_id(named, structured),
            )


def _structured(result: HandlerResult | None) -> Any:
    """A tool call's ``structuredContent`` (read, not dumped: the result holds
    the image data)."""
    if isinstance(result, BaseModel):
        return getattr(result, "structured_content", None)
    if isinstance(result, Mapping):
        return result.get("structuredContent")
    return None


def _image_ids(arguments: Mapping[str, Any], structured: Any) -> list[str]:
    """Stored images the call named in its arguments or returned, in order."""
    ids = [arguments.get(key) for key in _IMAGE_ARGUMENTS]
    images = structured.get("images") if isinstance(structured, Mapping) else None
    if isinstance(images, list):
        ids += [image.get("id") for image in images if isinstance(image, Mapping)]
    return list(dict.fromkeys(str(i) for i in ids if _valid(validate_image_id, i)))


def _generation_id(arguments: Mapping[str, Any], structured: Any) -> str | None:
    """The background generation the call named or started, if any."""
    for candidate in (
        arguments.get("generation_id"),
        structured.get("generation_id") if isinstance(structured, Mapping) else None,
    ):
        if _valid(validate_task_id, candidate):
            return str(candidate)
    return None


def _valid(check: Callable[[object], str], value: object) -> bool:
    try:
        check(value)
    except MCPImageError:
        return False
    return True
