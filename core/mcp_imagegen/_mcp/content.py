"""What tools return: structured results, previews, resource links and text.

Inline image data shares one budget per call, ``server.max_inline_bytes``
(counted in base64), so no tool result grows past what clients handle.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from typing import Any, Literal

import anyio
from mcp.types import ContentBlock, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from mcp_imagegen._service import BackendInfo, ImageService
from mcp_imagegen.errors import ImageNotFoundError
from mcp_imagegen.imaging import make_preview, preview_fits
from mcp_imagegen.models import ImageRecord

#: What image data a tool returns: a small preview, the stored bytes, or none.
Inline = Literal["preview", "full", "none"]

#: An image id → a link clients can open over the network. Over HTTP with
#: ``server.http.public_url`` it is the server's signed ``/images/{id}`` URL,
#: handed in by the composition root (this package knows nothing of HTTP).
ImageLink = Callable[[str], str]


# -- structured results (outputSchema) ------------------------------------------


def _compact(schema: Any, resolve: Callable[[Any], Any]) -> Any:
    """``schema`` with every ``$ref`` inlined and ``X | None`` as a type list."""
    if isinstance(schema, list):
        return [_compact(item, resolve) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if set(schema) == {"$ref"}:
        return _compact(copy.deepcopy(resolve(schema)), resolve)
    compact = {key: _compact(value, resolve) for key, value in schema.items()}
    branches = compact.get("anyOf")
    if branches and all(
        isinstance(b, dict) and set(b) == {"type"} and isinstance(b["type"], str)
        for b in branches
    ):
        del compact["anyOf"]
        compact["type"] = [b["type"] for b in branches]
    return compact


class ResultModel(BaseModel):
    """A tool's structured result, published as a self-contained outputSchema.

    Every client validates each result against the outputSchema (the SDK's
    client with jsonschema). Pydantic writes nested models as ``$ref`` into
    ``$defs`` and ``X | None`` as ``anyOf``; resolving the references and trying
    the branches made that check ~0.5 ms per generate_image result. The same
    constraints, inlined and as ``"type": [X, "null"]``, check in ~0.13 ms.

    Each model's schema is built once per mode and copied after that: several
    tools return the same models (``ImageInfo`` in six of them), and the SDK
    builds every tool's outputSchema at start-up. (The key is the mode only:
    result models have no field aliases, so ``by_alias`` cannot change it.)
    """

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The model's schema without references and with nullable type lists."""
        key = (cls, handler.mode)
        compact = _SCHEMAS.get(key)
        if compact is None:
            schema = handler.resolve_ref_schema(handler(core_schema))
            compact = _SCHEMAS[key] = _compact(schema, handler.resolve_ref_schema)
        return copy.deepcopy(compact)


#: Built schemas of ResultModel subclasses by (class, mode); see ResultModel.
_SCHEMAS: dict[tuple[type[ResultModel], str], JsonSchemaValue] = {}


class ImageInfo(ResultModel):
    """One stored image, as tools report it."""

    id: str
    uri: str = Field(description="MCP resource URI of the full image (image://<id>).")
    url: str = Field(description="Link to the image: file://, or http(s)://.")
    path: str | None = Field(None, description="Path on the server's machine, if any.")
    mime_type: str
    width: int
    height: int
    byte_size: int
    seed: int | None
    backend: str
    model: str | None
    prompt: str
    negative_prompt: str | None = None
    steps: int | None = Field(None, description="Inference steps, if given.")
    guidance_scale: float | None = None
    postprocess: list[str] = Field(
        default_factory=list, description="Post-processing steps applied, in order."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend and step facts (e.g. sampler, style), as recorded.",
    )
    created_at: str
    source_image_id: str | None = Field(
        None,
        description="The stored image this one was made from (transform_image, "
        "edit_image).",
    )
    origin: str | None = Field(
        None,
        description="Where an outside image came from (edit_image, ingest_image): "
        "upload, file:/... or an http(s) URL without query.",
    )
    style: str | None = Field(
        None, description="The style applied (generate_image's style argument)."
    )


class GenerateResult(ResultModel):
    """Result of generate_image, transform_image, edit_image and ingest_image."""

    images: list[ImageInfo]
    generation_id: str | None = Field(
        None,
        description="Set while the generation still runs: pass it to get_generation.",
    )
    status: Literal["working"] | None = Field(
        None, description="'working' while the generation still runs."
    )


class ImageList(ResultModel):
    """One page of list_images."""

    images: list[ImageInfo]
    next_cursor: str | None = Field(
        None, description="Pass as cursor to get the next page; null on the last page."
    )


class DeleteResult(ResultModel):
    """Result of delete_image."""

    deleted: str


class BackendList(ResultModel):
    """Result of list_backends."""

    backends: list[BackendInfo]


# -- builders -------------------------------------------------------------------


async def image_info(
    service: ImageService, record: ImageRecord, link: ImageLink | None = None
) -> ImageInfo:
    """The structured description of one stored image, with its link and path.

    With ``link``, a storage without URLs of its own (``file://``) gets
    ``link``'s URL instead, and no path: a remote client cannot open the
    server's files, and their layout is none of its business.
    """
    path = None if link is not None else service.storage.local_path(record.id)
    url = await service.storage.url_for(record.id)
    if link is not None and not url.startswith(("http://", "https://")):
        url = link(record.id)
    return ImageInfo(
        id=record.id,
        uri=f"image://{record.id}",
        url=url,
        path=str(path) if path else None,
        mime_type=record.mime_type,
        width=record.width,
        height=record.height,
        byte_size=record.byte_size,
        seed=record.seed,
        backend=record.backend,
        model=record.model,
        prompt=record.prompt,
        negative_prompt=record.negative_prompt,
        steps=record.steps,
        guidance_scale=record.guidance_scale,
        postprocess=record.postprocess,
        parameters=record.parameters,
        created_at=record.created_at.isoformat(),
        source_image_id=record.source_image_id,
        style=record.style,
        origin=record.origin,
    )


async def listed_infos(
    service: ImageService, records: list[ImageRecord], link: ImageLink | None = None
) -> list[ImageInfo]:
    """Entries for a listed page; images deleted since the listing are left out."""
    infos: list[ImageInfo] = []
    for record in records:
        try:
            infos.append(await image_info(service, record, link))
        except ImageNotFoundError:
            # Another call deleted it after the page was read (url_for may need
            # its record again): the page shows what exists, it does not fail.
            continue
    return infos


def short(text: str, length: int) -> str:
    """``text`` cut to ``length`` characters, an ellipsis marking the cut."""
    return text if len(text) <= length else text[: length - 1] + "…"


def _base64_size(size: int) -> int:
    """Length of ``size`` bytes once base64-encoded (with padding)."""
    return 4 * ((size + 2) // 3)


#: Inline data up to this size is base64-encoded on the event loop (~0.2 ms);
#: larger data in a worker thread (see :func:`_base64_text`).
INLINE_ON_LOOP_BYTES = 192 * 1024
#: Bytes base64-encoded per step in the worker thread: a multiple of 3, so the
#: steps' outputs join into exactly the whole's encoding; ~0.5 ms of GIL each.
BASE64_STEP_BYTES = 3 * 128 * 1024


def _base64_text(data: bytes) -> str:
    """``base64.b64encode(data).decode()``, without holding the GIL for long.

    ``b64encode`` never releases the GIL: one call on ~10 MB stops the event
    loop and every other thread for ~10 ms. Step by step, the interpreter can
    switch threads between steps; ``bytes.join`` copies with the GIL released.
    """
    view = memoryview(data)
    pieces = [
        base64.b64encode(view[start : start + BASE64_STEP_BYTES])
        for start in range(0, len(data), BASE64_STEP_BYTES)
    ]
    return b"".join(pieces).decode("ascii")


async def _image_block(data: bytes, mime_type: str) -> ImageContent:
    if len(data) <= INLINE_ON_LOOP_BYTES:
        text = base64.b64encode(data).decode()
    else:
        # Large results (server.max_inline_bytes allows them) in a worker
        # thread, so progress, cancellation and other calls keep running.
        text = await anyio.to_thread.run_sync(_base64_text, data)
    return ImageContent(type="image", data=text, mime_type=mime_type)


async def _inline_image(
    service: ImageService, record: ImageRecord, data: bytes, inline: Inline, budget: int
) -> tuple[ImageContent | None, str | None]:
    """The inline block for one image within ``budget`` base64 bytes.

    Returns the block (None when nothing fits) and a note saying what was left
    out and why (None when the image went out as asked).
    """
    server = service.settings.server
    cap = f"server.max_inline_bytes = {server.max_inline_bytes}"
    if inline == "full" and _base64_size(len(data)) <= budget:
        return await _image_block(data, record.mime_type), None
    # An image that already fits is its own preview: its header says so in
    # microseconds, less than a worker-thread call. Shrinking one is CPU work: a
    # worker thread keeps progress and cancellation live.
    fits = preview_fits(data, server.preview_max_side)
    if fits is not None:
        shown, mime = data, fits
    else:
        shown, mime = await anyio.to_thread.run_sync(
            make_preview, data, server.preview_max_side
        )
    if _base64_size(len(shown)) <= budget:
        if inline != "full":
            return await _image_block(shown, mime), None
        return await _image_block(shown, mime), (
            f"full image ({len(data)} bytes) is above the inline limit "
            f"({cap}, counted in base64); a preview is shown instead: read "
            "the image:// resource or open the path/URL for the full image"
        )
    return None, (
        f"not shown inline: the call's images exceed the inline limit ({cap}, "
        "counted in base64); read the image:// resource or open the path/URL"
    )


def _link(info: ImageInfo, record: ImageRecord) -> ResourceLink:
    return ResourceLink(
        type="resource_link",
        uri=info.uri,
        name=record.id,
        title=short(record.prompt, 60),
        mime_type=record.mime_type,
        size=record.byte_size,
    )


def _summary(
    infos: list[ImageInfo], notes: list[str | None], linked: bool
) -> TextContent:
    # With network links the server's own paths mean nothing to the reader.
    lines = [
        f"- {info.id}: {info.url if linked else info.path or info.url} "
        f"({info.width}x{info.height} {info.mime_type}, seed {info.seed})"
        + (f"; {note}" if note else "")
        for info, note in zip(infos, notes, strict=True)
    ]
    noun = "image" if len(infos) == 1 else "images"
    return TextContent(type="text", text=f"{len(infos)} {noun}:\n" + "\n".join(lines))


async def image_content(
    service: ImageService,
    items: list[tuple[ImageRecord, bytes | None]],
    inline: Inline,
    link: ImageLink | None = None,
) -> tuple[list[ContentBlock], list[ImageInfo]]:
    """Content blocks and structured entries for images of one call.

    Each image gets its inline block (if asked for and within the shared
    budget), a resource link, and a line in one closing text block. ``bytes``
    may be None when ``inline`` is "none". ``link`` as for :func:`image_info`;
    with it the text lines show the URLs rather than server paths.
    """
    content: list[ContentBlock] = []
    infos = [await image_info(service, record, link) for record, _ in items]
    notes: list[str | None] = []
    budget = service.settings.server.max_inline_bytes
    for (record, data), info in zip(items, infos, strict=True):
        note = None
        if inline != "none" and data is not None:
            block, note = await _inline_image(service, record, data, inline, budget)
            if block is not None:
                budget -= len(block.data)
                content.append(block)
        notes.append(note)
        content.append(_link(info, record))
    content.append(_summary(infos, notes, linked=link is not None))
    return content, infos
