"""The ``metadata`` and ``strip_metadata`` steps: embed the recipe, or remove it all.

Both work on the file's container (see :mod:`mcp_imagegen_imageops.containers`):
the pixels are never re-encoded, so they cost little and lose nothing.

What ``metadata`` writes:

- PNG: text chunks ``parameters`` (the AUTOMATIC1111 layout that Stable Diffusion
  tools read), ``mcp-imagegen`` (the full recipe as JSON), ``Description`` (the
  prompt) and ``Software``; plus EXIF and XMP as below, so the recipe survives a
  later conversion to JPEG or WebP.
- EXIF (every format): ``ImageDescription`` (the prompt), ``Software`` and
  ``UserComment`` (the ``parameters`` text, UTF-16 as AUTOMATIC1111 writes it).
- XMP (every format): ``dc:description``, ``xmp:CreatorTool``, the IPTC digital
  source type "trainedAlgorithmicMedia" (marks the image as AI generated), and
  the ``parameters`` text and JSON recipe in the ``mcpimagegen:`` namespace.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any, ClassVar
from xml.sax.saxutils import escape, quoteattr

import structlog
from PIL import Image

import mcp_imagegen
from mcp_imagegen import (
    ComponentSettings,
    GeneratedImage,
    PostProcessingError,
    ProcessingContext,
)
from mcp_imagegen.imaging import is_encoded_here, verify_image
from mcp_imagegen_imageops.containers import (
    EmbeddedMetadata,
    TextChunk,
    write_metadata,
)
from mcp_imagegen_imageops.containers import strip_metadata as strip_container
from mcp_imagegen_imageops.encoding import WRITABLE_MIME_TYPES, has_alpha, verified
from mcp_imagegen_imageops.step import ImageOpsStep

log = structlog.get_logger(__name__)

#: PNG keyword of the JSON recipe chunk.
RECIPE_KEYWORD = "mcp-imagegen"
#: PNG keyword AUTOMATIC1111, ComfyUI, InvokeAI, civitai, ... read.
PARAMETERS_KEYWORD = "parameters"
#: XMP namespace of the properties only mcp-imagegen writes.
XMP_NAMESPACE = "urn:mcp-imagegen:xmp:1.0/"
DIGITAL_SOURCE_TYPE = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
)
_EXIF_IMAGE_DESCRIPTION = 0x010E
_EXIF_SOFTWARE = 0x0131
_EXIF_IFD = 0x8769
_EXIF_USER_COMMENT = 0x9286
_USER_COMMENT_UNICODE = b"UNICODE\x00"
#: Inputs up to this size are processed on the event loop (see :func:`_small`).
INLINE_MAX_BYTES = 256 * 1024
#: ... when their pixels need inflating to be verified: at most this many.
INLINE_MAX_PIXELS = 256 * 256
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# XML 1.0 cannot hold these characters at all, escaped or not.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class MetadataSettings(ComponentSettings):
    """``[postprocess.<name>]`` with ``type = "metadata"``."""

    #: PNG only: write the ``parameters``, ``mcp-imagegen`` (JSON), ``Description``
    #: and ``Software`` text chunks.
    png_text: bool = True
    #: Write an EXIF block (ImageDescription, Software, UserComment).
    exif: bool = True
    #: Write an XMP packet (description, generator, AI-generated source type,
    #: parameters and JSON recipe).
    xmp: bool = True
    #: Include the prompt and negative prompt. Off: only the settings (seed,
    #: steps, size, model, ...) are embedded, for images shared publicly.
    include_prompt: bool = True


class MetadataStep(ImageOpsStep):
    """Embed the generation recipe so the image carries how to reproduce it.

    Any EXIF block, XMP packet or same-named text chunk the image already has is
    replaced. GIF images pass through unchanged (a warning is logged).
    """

    name: ClassVar[str] = "metadata"
    Settings: ClassVar[type[ComponentSettings]] = MetadataSettings
    settings: MetadataSettings

    def runs_inline(self, image: GeneratedImage) -> bool:
        """Small images are done on the event loop (see :func:`_small`)."""
        return _small(image)

    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Write the recipe of ``image`` into its file (:class:`MetadataSettings`)."""
        # A whole image? (pixels not needed)
        decoded = verify_image(image.data, encoded_here=is_encoded_here(image))
        image = verified(image, decoded)
        if image.mime_type not in WRITABLE_MIME_TYPES:
            log.warning(
                "metadata_not_written",
                step=self.instance_name,
                mime_type=image.mime_type,
                reason="format has no place for it; add a convert step before",
            )
            return image
        recipe = build_recipe(
            image, context, include_prompt=self.settings.include_prompt
        )
        parameters = format_parameters(recipe)
        embedded = EmbeddedMetadata(
            exif=build_exif(recipe, parameters) if self.settings.exif else None,
            xmp=build_xmp(recipe, parameters) if self.settings.xmp else None,
            png_text=self._png_text(recipe, parameters),
        )
        data = write_metadata(
            image.data,
            image.mime_type,
            embedded,
            canvas=decoded.size,
            has_alpha=has_alpha(decoded) or decoded.has_transparency_data,
        )
        return image.model_copy(update={"data": data})

    def _png_text(
        self, recipe: dict[str, Any], parameters: str
    ) -> tuple[TextChunk, ...]:
        if not self.settings.png_text:
            return ()
        chunks = [
            TextChunk.text(PARAMETERS_KEYWORD, parameters),
            TextChunk.international(RECIPE_KEYWORD, _json(recipe)),
            TextChunk.text("Software", recipe["generator"]),
        ]
        if "prompt" in recipe:
            chunks.append(TextChunk.text("Description", recipe["prompt"]))
        return tuple(chunks)


class StripMetadataSettings(ComponentSettings):
    """``[postprocess.<name>]`` with ``type = "strip_metadata"``."""

    #: Keep the ICC colour profile: it is colour data, and removing it can change
    #: how colours look in colour-managed viewers.
    keep_icc: bool = True


class StripMetadataStep(ImageOpsStep):
    """Remove EXIF, XMP, PNG text chunks, JPEG comments and IPTC data.

    Pixels are untouched. Only PNG, JPEG and WebP are supported; any other format
    is an error (stripping must not silently do nothing).
    """

    name: ClassVar[str] = "strip_metadata"
    Settings: ClassVar[type[ComponentSettings]] = StripMetadataSettings
    settings: StripMetadataSettings

    def runs_inline(self, image: GeneratedImage) -> bool:
        """Small images are done on the event loop (see :func:`_small`)."""
        return _small(image)

    def apply(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Return ``image`` without its metadata blocks."""
        decoded = verify_image(image.data, encoded_here=is_encoded_here(image))
        image = verified(image, decoded)  # a whole image?
        if image.mime_type not in WRITABLE_MIME_TYPES:
            raise PostProcessingError(
                f"{self.describe()} cannot strip metadata from {image.mime_type} "
                "images; put a 'convert' step before it."
            )
        data = strip_container(
            image.data, image.mime_type, keep_icc=self.settings.keep_icc
        )
        return image if data == image.data else image.model_copy(update={"data": data})


def _small(image: GeneratedImage) -> bool:
    """True when the metadata steps' work on ``image`` is a fraction of a ms.

    Both steps rewrite the container (work in proportion to the bytes) after
    :func:`verify_image`, which inflates the pixel data of plain bytes but only
    reads the header of bytes encoded in this process
    (:func:`~mcp_imagegen.imaging.is_encoded_here`). So: at most
    :data:`INLINE_MAX_BYTES`, and either encoded here or a PNG whose header
    (what verification inflates by, not what the backend claims) announces at
    most :data:`INLINE_MAX_PIXELS`. A 512x512 placeholder image (28 KB, encoded
    here) qualifies: ~0.15 ms, against a worker-thread round trip.
    """
    data = image.data
    if len(data) > INLINE_MAX_BYTES:
        return False
    if is_encoded_here(image):
        return True
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return False
    width, height = struct.unpack_from(">II", data, 16)
    return bool(width * height <= INLINE_MAX_PIXELS)


# -- the recipe ----------------------------------------------------------------


def build_recipe(
    image: GeneratedImage, context: ProcessingContext, *, include_prompt: bool = True
) -> dict[str, Any]:
    """Everything needed to reproduce ``image``, as JSON-able data.

    ``width``/``height`` are the generation size (what to ask the backend for),
    which may differ from the file's size after a resize.
    """
    request = context.request
    recipe: dict[str, Any] = {
        "generator": f"mcp-imagegen {mcp_imagegen.__version__}",
    }
    if include_prompt:
        recipe["prompt"] = request.prompt
        if request.negative_prompt:
            recipe["negative_prompt"] = request.negative_prompt
    seed = context.seed if context.seed is not None else image.seed
    facts = image.parameters
    recipe.update(
        {
            "seed": seed,
            "steps": request.steps or _number(facts, "steps", "num_inference_steps"),
            "guidance_scale": request.guidance_scale
            if request.guidance_scale is not None
            else _number(facts, "guidance_scale", "cfg_scale"),
            "sampler": _text(facts, "sampler", "scheduler"),
            "width": request.width,
            "height": request.height,
            "backend": context.backend,
            "model": context.model or image.model or request.model,
        }
    )
    if request.style:
        recipe["style"] = request.style
    if request.parameters:
        recipe["parameters"] = dict(request.parameters)
    if facts:
        recipe["backend_parameters"] = dict(facts)
    if context.source_image_id:
        recipe["source_image_id"] = context.source_image_id
    if context.origin:
        recipe["origin"] = context.origin
    if request.strength is not None:
        recipe["strength"] = request.strength
    return {k: v for k, v in recipe.items() if v is not None}


def format_parameters(recipe: dict[str, Any]) -> str:
    """Render the recipe in the AUTOMATIC1111 ``parameters`` layout.

    ``<prompt>`` / ``Negative prompt: <neg>`` / ``Steps: N, Sampler: S, CFG scale:
    X, Seed: S, Size: WxH, Model: M``; fields that are unknown are left out.
    """
    lines = []
    if "prompt" in recipe:
        lines.append(recipe["prompt"])
    if recipe.get("negative_prompt"):
        lines.append(f"Negative prompt: {recipe['negative_prompt']}")
    fields: list[tuple[str, Any]] = [
        ("Steps", recipe.get("steps")),
        ("Sampler", recipe.get("sampler")),
        ("CFG scale", _format_number(recipe.get("guidance_scale"))),
        ("Seed", recipe.get("seed")),
        ("Size", f"{recipe['width']}x{recipe['height']}"),
        ("Model", recipe.get("model")),
    ]
    lines.append(
        ", ".join(
            f"{key}: {_quote(value)}" for key, value in fields if value is not None
        )
    )
    return "\n".join(lines)


def build_exif(recipe: dict[str, Any], parameters: str) -> bytes:
    """Return a bare (big-endian) TIFF stream holding the recipe's EXIF tags."""
    exif = Image.Exif()
    # Big-endian, like AUTOMATIC1111's piexif: UserComment's UTF-16 then matches
    # the block's byte order for every reader.
    exif.endian = ">"
    if "prompt" in recipe:
        # ASCII tag by the standard; most readers take UTF-8 bytes as they are.
        exif[_EXIF_IMAGE_DESCRIPTION] = recipe["prompt"].encode("utf-8")
    exif[_EXIF_SOFTWARE] = recipe["generator"]
    exif.get_ifd(_EXIF_IFD)[_EXIF_USER_COMMENT] = (
        _USER_COMMENT_UNICODE + parameters.encode("utf-16-be")
    )
    return exif.tobytes()[len(b"Exif\x00\x00") :]


def build_xmp(recipe: dict[str, Any], parameters: str) -> bytes:
    """Return an XMP packet describing the image and its recipe."""
    description = ""
    if "prompt" in recipe:
        description = (
            '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">'
            f"{_xml(recipe['prompt'])}</rdf:li></rdf:Alt></dc:description>"
        )
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about=""'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:xmp="http://ns.adobe.com/xap/1.0/"'
        ' xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        f' xmlns:mcpimagegen="{XMP_NAMESPACE}"'
        f" xmp:CreatorTool={quoteattr(_clean(recipe['generator']))}"
        f' Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}">'
        f"{description}"
        f"<mcpimagegen:parameters>{_xml(parameters)}</mcpimagegen:parameters>"
        f"<mcpimagegen:recipe>{_xml(_json(recipe))}</mcpimagegen:recipe>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    )
    return packet.encode("utf-8")


def _json(recipe: dict[str, Any]) -> str:
    return json.dumps(recipe, ensure_ascii=False, separators=(",", ":"))


def _clean(text: str) -> str:
    return _XML_INVALID.sub("", text)


def _xml(text: str) -> str:
    return escape(_clean(text))


def _quote(value: Any) -> str:
    # AUTOMATIC1111 quotes values that would break its "k: v, k: v" parsing.
    text = str(value)
    if any(ch in text for ch in ",\n:"):
        return json.dumps(text, ensure_ascii=False)
    return text


def _format_number(value: float | int | None) -> str | None:
    return None if value is None else f"{value:g}"


def _number(facts: dict[str, Any], *keys: str) -> float | int | None:
    for key in keys:
        value = facts.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    return None


def _text(facts: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = facts.get(key)
        if isinstance(value, str) and value:
            return value
    return None
