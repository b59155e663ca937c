"""``completion/complete``: one handler for every prompt and resource template.

MCP completes prompt arguments and resource template variables (not tool
arguments: those carry their allowed values as schema enums). The handler
goes by the argument's name, wherever it appears, so prompts added later get
completions without more work:

- ``image_id`` / ``id``: stored image ids starting with the typed prefix,
  newest first (``image://{image_id}`` and its ``/metadata``);
- ``backend``: the configured backend instances;
- ``postprocess`` / ``step``: the loaded post-processing step names;
- ``style``: the configured style names, once the service has styles;
- ``output_format``: the supported formats.

Other names complete to nothing. Values start with the typed text, compared
case-insensitively; at most :data:`MAX_VALUES` are returned, ``total`` and
``hasMore`` telling when there are more.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from mcp.server.context import ServerRequestContext
from mcp.types import CompleteRequestParams, CompleteResult, Completion

from mcp_imagegen._mcp.guidance import style_names
from mcp_imagegen._service import ImageService
from mcp_imagegen.errors import MCPImageError
from mcp_imagegen.models import OUTPUT_FORMATS

#: The most values one answer carries (the spec's limit).
MAX_VALUES: Final = 100
#: Stored images looked at per completion: a bound on the work a keystroke
#: costs in a large gallery (the newest come first, the likeliest wanted).
MAX_SCANNED_IMAGES: Final = 1000
_PAGE: Final = 100

IMAGE_ID_ARGUMENTS: Final = frozenset({"image_id", "id"})
STEP_ARGUMENTS: Final = frozenset({"postprocess", "step"})


def _matching(names: Iterable[str], prefix: str) -> list[str]:
    folded = prefix.casefold()
    return [n for n in names if n.casefold().startswith(folded)]


async def image_ids(service: ImageService, prefix: str) -> tuple[list[str], bool]:
    """Stored ids starting with ``prefix``, newest first, and whether more match."""
    folded = prefix.casefold()
    found: list[str] = []
    cursor: str | None = None
    scanned = 0
    while scanned < MAX_SCANNED_IMAGES:
        page = await service.list_images(_PAGE, cursor)
        scanned += len(page.items)
        for record in page.items:
            if record.id.casefold().startswith(folded):
                if len(found) == MAX_VALUES:
                    return found, True
                found.append(record.id)
        if page.next_cursor is None:
            return found, False
        cursor = page.next_cursor
    return found, True  # not all looked at: more may match


async def values_for(
    service: ImageService, argument: str, prefix: str
) -> tuple[list[str], bool]:
    """The completions of ``argument`` typed so far as ``prefix``, and has-more."""
    if argument in IMAGE_ID_ARGUMENTS:
        return await image_ids(service, prefix)
    if argument == "backend":
        names = sorted(service.backends)
    elif argument in STEP_ARGUMENTS:
        names = sorted(service.steps)
    elif argument == "style":
        names = style_names(service)
    elif argument == "output_format":
        names = list(OUTPUT_FORMATS)
    else:
        names = []
    matching = _matching(names, prefix)
    return matching[:MAX_VALUES], len(matching) > MAX_VALUES


async def complete(
    ctx: ServerRequestContext[ImageService, Any], params: CompleteRequestParams
) -> CompleteResult:
    """The ``completion/complete`` handler (see the module docstring)."""
    try:
        values, more = await values_for(
            ctx.lifespan_context, params.argument.name, params.argument.value
        )
    except MCPImageError:
        # A storage that cannot list now: no suggestions rather than an error
        # while the user types; the failure is logged by the storage.
        values, more = [], False
    return CompleteResult(
        completion=Completion(
            values=values, total=None if more else len(values), has_more=more
        )
    )
