"""Image input: edit (image-to-image, inpainting) and ingest (store an outside image).

An edit reads its input (and mask) through :mod:`.inputs`, decodes and checks
them in a worker thread, sizes them to the request (the input's own size by
default, fitted to the limits), and hands the backend PNG bytes of exactly
``width`` x ``height`` in ``GenerationRequest.image`` / ``mask``. From there it
is a generation: the same slots, post-processing, storage and events. The new
record names its input: ``source_image_id`` for a stored image, ``origin`` for
an outside one.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anyio
from PIL import Image

from mcp_imagegen._ids import new_image_id
from mcp_imagegen._service.inputs import (
    InputReader,
    RawInput,
    decode_error,
    decode_input,
    open_input,
    verify_input,
)
from mcp_imagegen._service.pipeline import Pipeline, _release_after
from mcp_imagegen._service.validation import validate_request
from mcp_imagegen.errors import ValidationError
from mcp_imagegen.imaging import describe_image, flatten_alpha
from mcp_imagegen.interfaces import InferenceBackend
from mcp_imagegen.models import (
    Capabilities,
    Durations,
    ImageRecord,
    ProgressReporter,
    StoredImage,
    ignore_progress,
)

if TYPE_CHECKING:
    from mcp_imagegen._config import LimitsSettings, Settings

#: ``backend`` of an ingested image's record: no backend made it.
INGEST_BACKEND = "ingest"
#: How far an edit moves away from its input when the caller does not say.
DEFAULT_STRENGTH = 0.6


def check_image_capability(
    name: str,
    capabilities: Capabilities,
    backends: Mapping[str, InferenceBackend],
    *,
    mask: bool,
) -> None:
    """Refuse an image (or a mask) for a backend that cannot take it.

    Raises:
        ValidationError: naming the backend and those that can.
    """
    if capabilities.image_input and (capabilities.mask or not mask):
        return
    able = sorted(
        other
        for other, backend in backends.items()
        if backend.capabilities.image_input and (backend.capabilities.mask or not mask)
    )
    what = "a mask (inpainting)" if mask else "an input image"
    hint = (
        f"use backend {' or '.join(repr(a) for a in able)}."
        if able
        else "no configured backend does."
    )
    raise ValidationError(f"Backend '{name}' does not take {what}; {hint}")


def check_strength(strength: float) -> float:
    """Return ``strength`` when it is within 0 to 1.

    Raises:
        ValidationError: otherwise (NaN included).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValidationError(
            f"strength {strength} is out of range: use 0 (keep the image) to 1 "
            "(ignore it)."
        )
    return float(strength)


def target_size(
    source: tuple[int, int],
    width: int | None,
    height: int | None,
    capabilities: Capabilities,
    limits: LimitsSettings,
) -> tuple[int, int]:
    """The size to edit at: the given sides, the rest from the input's shape.

    A side left open follows the input's aspect ratio; with both open the
    input's own size is used, scaled into the limits. Derived sides are rounded
    to the side multiple and clamped; sides the caller gave are validated later
    as given.
    """
    low = max(limits.min_side, capabilities.min_side)
    high = min(limits.max_side, capabilities.max_side)
    multiple = math.lcm(limits.side_multiple, capabilities.side_multiple)
    max_pixels = min(limits.max_pixels, capabilities.max_pixels)
    low_m = -(-low // multiple) * multiple
    high_m = max(low_m, high // multiple * multiple)

    def fit(value: float) -> int:
        return int(max(low_m, min(high_m, round(value / multiple) * multiple)))

    src_w, src_h = source
    if width is not None and height is not None:
        return width, height
    if width is not None:
        return width, fit(width * src_h / src_w)
    if height is not None:
        return fit(height * src_w / src_h), height
    scale = min(1.0, high / max(src_w, src_h), math.sqrt(max_pixels / (src_w * src_h)))
    if min(src_w, src_h) * scale < low:  # too small: scaled up, shape kept
        scale = min(low / min(src_w, src_h), high / max(src_w, src_h))
    w, h = fit(src_w * scale), fit(src_h * scale)
    while w * h > max_pixels and max(w, h) > low_m:  # rounding up overshot
        if w >= h:
            w -= multiple
        else:
            h -= multiple
    return w, h


def prepare_inputs(
    image: Image.Image,
    mask: Image.Image | None,
    size: tuple[int, int],
    image_data: bytes | None = None,
    mask_data: bytes | None = None,
) -> tuple[bytes, bytes | None]:
    """PNG bytes of the image (RGB) and the mask (greyscale), both ``size``.

    ``image`` and ``mask`` are checked images (:func:`verify_input`); when one
    already is such a PNG, its ``image_data`` / ``mask_data`` is passed on as
    it is: decoding and re-encoding it would cost more than the edit itself.
    A mask must have the input image's size (it is then resized with it) or the
    target size.

    Raises:
        ValidationError: for a mask of another size.
    """
    if mask is not None and mask.size not in (image.size, size):
        raise ValidationError(
            f"mask is {mask.width}x{mask.height} pixels but the image is "
            f"{image.width}x{image.height} (edited at {size[0]}x{size[1]}): give a "
            "mask of the image's size (or of the edit size), white where to repaint."
        )
    if image_data is not None and _is_png(image, "RGB", size):
        image_png = image_data
    else:
        rgb = flatten_alpha(image, (255, 255, 255)) if image.mode != "RGB" else image
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS)
        image_png = _png(rgb)
    mask_png = None
    if mask is not None:
        if mask_data is not None and _is_png(mask, "L", size):
            mask_png = mask_data
        else:
            grey = mask.convert("L")
            if grey.size != size:
                grey = grey.resize(size, Image.Resampling.BILINEAR)
            mask_png = _png(grey)
    return image_png, mask_png


def _checked(
    raw: RawInput,
    header: Image.Image,
    argument: str,
    mode: str,
    size: tuple[int, int],
    max_pixels: int,
) -> Image.Image:
    """The input proven whole: checked when passed on as is, else decoded."""
    if _is_png(header, mode, size):
        return verify_input(raw, argument, max_pixels)
    return decode_input(raw, argument, max_pixels)


def _is_png(image: Image.Image, mode: str, size: tuple[int, int]) -> bool:
    return image.format == "PNG" and image.mode == mode and image.size == size


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # Level 1: the backend decodes it right away; size hardly matters.
    image.save(buffer, format="PNG", compress_level=1)
    # Plain bytes: nothing verifies a request's input again, and wrapping it as
    # an EncodedImage copied ~10 MB (at 2048²) with the GIL held.
    return buffer.getvalue()


class Editor:
    """Edits and ingests images, through the pipeline's stages.

    Args:
        settings: The whole configuration (``inputs``, ``limits``, ``generation``).
        pipeline: The generation pipeline (backends, slots, chain, saving).
        reader: Reads input images from the allowed sources.
    """

    def __init__(
        self, settings: Settings, pipeline: Pipeline, reader: InputReader
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.reader = reader

    async def edit(
        self,
        image: str,
        prompt: str,
        *,
        mask: str | None = None,
        strength: float = DEFAULT_STRENGTH,
        negative_prompt: str | None = None,
        seed: int | None = None,
        steps: int | None = None,
        guidance_scale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        backend: str | None = None,
        postprocess: Sequence[str] | None = None,
        output_format: str | None = None,
        progress: ProgressReporter = ignore_progress,
        style: str | None = None,
    ) -> StoredImage:
        """Edit an image (see ``ImageService.edit``)."""
        pipeline = self.pipeline
        backend_name, engine = pipeline.backend(backend)
        capabilities = engine.capabilities
        strength = check_strength(strength)
        check_image_capability(
            backend_name, capabilities, pipeline.backends, mask=mask is not None
        )
        chain, fmt = pipeline.finishing(postprocess, output_format)
        raw = await self.reader.read(image, "image")
        raw_mask = None if mask is None else await self.reader.read(mask, "mask")
        size, image_png, mask_png = await anyio.to_thread.run_sync(
            self._prepare, raw, raw_mask, width, height, capabilities
        )
        request = self.settings.generation.request(
            prompt,
            negative_prompt=negative_prompt,
            seed=seed,
            steps=steps,
            guidance_scale=guidance_scale,
            style=style,
        ).model_copy(
            update={
                "width": size[0],
                "height": size[1],
                "num_images": 1,
                "image": image_png,
                "mask": mask_png,
                "strength": strength,
            }
        )
        request = validate_request(request, capabilities, self.settings.limits)
        images, generate_ms = await pipeline._run_backend(
            backend_name, engine, request, progress
        )
        recorded: dict[str, str | float] = {"strength": strength}
        if raw_mask is not None:
            recorded["mask"] = raw_mask.source_image_id or raw_mask.origin or ""
        stored = await pipeline._finish_and_save(
            images,
            generate_ms,
            request,
            backend_name,
            chain,
            fmt,
            source_image_id=raw.source_image_id,
            origin=raw.origin,
            parameters=recorded,
        )
        await _release_after(request.width * request.height)
        return stored[0]

    def _prepare(
        self,
        raw: RawInput,
        raw_mask: RawInput | None,
        width: int | None,
        height: int | None,
        capabilities: Capabilities,
    ) -> tuple[tuple[int, int], bytes, bytes | None]:
        """Check, size and encode the inputs (CPU work: a worker thread).

        Headers first: an input that goes on as it is (a PNG of the edit's
        size and mode) is only proven whole; any other is decoded once, which
        proves it whole too, and its pixels are then resized or converted.
        """
        max_pixels = self.settings.inputs.max_pixels
        header = open_input(raw, "image", max_pixels)
        mask_header = (
            None if raw_mask is None else open_input(raw_mask, "mask", max_pixels)
        )
        size = target_size(
            header.size, width, height, capabilities, self.settings.limits
        )
        checked = _checked(raw, header, "image", "RGB", size, max_pixels)
        checked_mask = (
            None
            if raw_mask is None or mask_header is None
            else _checked(raw_mask, mask_header, "mask", "L", size, max_pixels)
        )
        image_png, mask_png = prepare_inputs(
            checked,
            checked_mask,
            size,
            raw.data,
            None if raw_mask is None else raw_mask.data,
        )
        return size, image_png, mask_png

    async def ingest(
        self,
        *,
        data: str | None = None,
        url: str | None = None,
        path: str | None = None,
    ) -> StoredImage:
        """Store an outside image as it is (see ``ImageService.ingest``)."""
        given = [
            (name, value)
            for name, value in (("data", data), ("url", url), ("path", path))
            if value is not None
        ]
        if len(given) != 1:
            raise ValidationError(
                "Give exactly one of data (a data:image/...;base64, URI), url or path."
            )
        name, value = given[0]
        reader = self.reader
        if name == "data":
            raw = await reader.read_data(value.strip(), name)
        elif name == "url":
            raw = await reader.fetch_url(value.strip(), name)
        else:
            raw = await reader.read_path(value.strip(), name)
        mime, width, height, digest = await anyio.to_thread.run_sync(
            self._describe, raw, name
        )
        record = ImageRecord(
            id=new_image_id(),
            prompt="",
            width=width,
            height=height,
            backend=INGEST_BACKEND,
            mime_type=mime,
            byte_size=len(raw.data),
            sha256=digest,
            durations=Durations(),
            origin=raw.origin,
        )
        await self.pipeline.saver.save_all([record], [raw.data])
        return StoredImage(record=record, data=raw.data)

    def _describe(self, raw: RawInput, argument: str) -> tuple[str, int, int, str]:
        max_pixels = self.settings.inputs.max_pixels
        # Decodes every pixel (or proves a PNG whole): nothing broken is stored.
        try:
            mime, width, height = describe_image(raw.data, max_pixels=max_pixels)
        except ValidationError as exc:
            raise decode_error(exc, argument, max_pixels) from None
        return mime, width, height, hashlib.sha256(raw.data).hexdigest()
