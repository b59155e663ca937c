"""Turn KServe V1 and V2 answers into verified, encoded images.

Predictors disagree about where the image goes, so the parsers accept every variant
seen in the wild (see docs/kserve.md): V1 ``image.b64`` / ``image_b64`` / bare
base64 / data URIs / URL-safe or unpadded base64 / raw image bodies, and V2 BYTES
outputs (base64 in JSON or raw in the binary tail) and UINT8/INT/FP tensors in
HWC or CHW layout with values in 0-255, 0-1 or -1-1 (converted to PNG).

Every image is decoded with Pillow under a pixel cap before it is accepted. The
parsers are synchronous and CPU-bound (run them in a worker thread) and raise
nothing but :class:`~mcp_imagegen.BadBackendResponseError`, whatever the bytes.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mcp_imagegen import BackendError, BadBackendResponseError
from mcp_imagegen.imaging import ImageDecodeError, describe_image

if TYPE_CHECKING:
    import numpy as np

#: Header of the binary tensor extension: length of the JSON part of the body.
BINARY_HEADER = "inference-header-content-length"

_DATA_URI = re.compile(r"^data:([\w.+/-]*)((?:;[\w.+=-]*)*),", re.ASCII)
_WHITESPACE = re.compile(rb"[ \t\r\n]+")
_IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
)
# Keys under which V1 predictors put the image, most specific first.
_V1_IMAGE_KEYS = (
    "image",
    "image_b64",
    "b64_json",
    "b64",
    "images",
    "generated_image",
    "data",
    "bytes",
)
_NUMERIC_DTYPES = {
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
# Longest excerpt of the answer quoted in an error message.
_EXCERPT = 160


@dataclass(frozen=True)
class ParsedImage:
    """One verified image: encoded bytes plus what Pillow found in them."""

    data: bytes
    mime_type: str
    width: int
    height: int


class _Fail(Exception):
    """Internal: a reason the answer is unusable (wrapped with context later)."""


# -- public entry points ---------------------------------------------------------


def parse_v1_response(
    body: bytes,
    *,
    content_type: str | None = None,
    where: str = "KServe",
    max_pixels: int = 8192 * 8192,
) -> list[ParsedImage]:
    """Return every image in a V1 ``:predict`` answer, in order.

    Args:
        body: The raw response body.
        content_type: The response's ``Content-Type`` header, if any.
        where: Prefix of error messages (instance, URL, model).
        max_pixels: Largest image accepted.

    Raises:
        BadBackendResponseError: if the answer holds no image or a broken one.
    """
    return _guard(where, lambda: _parse_v1(body, content_type, max_pixels))


def parse_v2_response(
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    output_name: str | None = None,
    where: str = "KServe",
    max_pixels: int = 8192 * 8192,
) -> list[ParsedImage]:
    """Return the images of one output of a V2 ``/infer`` answer.

    Args:
        body: The raw response body (JSON, or JSON plus a binary tail).
        headers: Response headers; ``inference-header-content-length`` marks a
            binary-extension answer.
        output_name: Output to read; ``None`` picks the first output that decodes
            as one or more images.
        where: Prefix of error messages (instance, URL, model).
        max_pixels: Largest image accepted.

    Raises:
        BadBackendResponseError: if the answer holds no image or a broken one.
    """
    header = None
    for key, value in (headers or {}).items():
        if key.lower() == BINARY_HEADER:
            header = value
    return _guard(where, lambda: _parse_v2(body, header, output_name, max_pixels))


def decode_base64(text: str) -> bytes:
    """Decode base64 strictly, accepting data URIs, URL-safe and unpadded forms.

    Whitespace (line breaks of MIME-style base64) is removed; any other character
    outside the alphabet is an error, never silently dropped.

    Raises:
        ValueError: if ``text`` is not valid base64.
    """
    match = _DATA_URI.match(text)
    if match:
        if ";base64" not in match.group(2).lower():
            raise ValueError("the data URI is not base64-encoded")
        text = text[match.end() :]
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("the text holds non-ASCII characters") from None
    try:
        # Fast path, in C: canonical base64 (what nearly every predictor sends).
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        pass
    raw = _WHITESPACE.sub(b"", raw)
    if b"-" in raw or b"_" in raw:
        if b"+" in raw or b"/" in raw:
            raise ValueError("the text mixes the standard and URL-safe alphabets")
        raw = raw.translate(bytes.maketrans(b"-_", b"+/"))
    remainder = len(raw) % 4
    if remainder == 1:
        raise ValueError("the text has an impossible length for base64")
    if remainder:
        raw += b"=" * (4 - remainder)
    try:
        return base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64 ({exc})") from None


# -- shared ------------------------------------------------------------------------


def _guard(where: str, parse: Any) -> list[ParsedImage]:
    try:
        result: list[ParsedImage] = parse()
    except BackendError:
        raise
    except _Fail as exc:
        raise BadBackendResponseError(f"{where}: {exc}") from None
    except Exception as exc:  # any other surprise in the bytes must stay typed
        detail = _clip(f"{type(exc).__name__}: {exc}")
        raise BadBackendResponseError(
            f"{where}: the answer could not be read ({detail})."
        ) from exc
    if not result:
        raise BadBackendResponseError(f"{where}: the answer holds no image.")
    return result


def _clip(text: str, limit: int = _EXCERPT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(_IMAGE_MAGIC) or (
        data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    )


def _verify(data: bytes, what: str, max_pixels: int) -> ParsedImage:
    try:
        mime, width, height = describe_image(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise _Fail(f"{what} is not a usable image: {exc}") from None
    return ParsedImage(data=data, mime_type=mime, width=width, height=height)


def _image_from_text(text: str, what: str, max_pixels: int) -> ParsedImage:
    if text.startswith(("http://", "https://")):
        raise _Fail(
            f"{what} is a URL, not image data; this predictor returns links, "
            "which mcp-imagegen does not fetch."
        )
    try:
        data = decode_base64(text)
    except ValueError as exc:
        raise _Fail(f"{what} is not base64 image data: {exc}.") from None
    return _verify(data, what, max_pixels)


def _load_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _Fail(f"the answer is not valid JSON ({_clip(str(exc))}).") from None


def _server_error(doc: Mapping[str, Any]) -> str:
    for key in ("error", "detail", "message"):
        if key in doc:
            return f" It says: {_clip(str(doc[key]))}"
    return ""


def _keys(doc: Mapping[str, Any]) -> str:
    return ", ".join(sorted(str(k) for k in doc)[:10]) or "none"


# -- V1 ----------------------------------------------------------------------------


def _parse_v1(
    body: bytes, content_type: str | None, max_pixels: int
) -> list[ParsedImage]:
    if not body:
        raise _Fail("the answer is empty.")
    ctype = (content_type or "").split(";")[0].strip().lower()
    stripped = body.lstrip()
    is_json = "json" in ctype or stripped[:1] in (b"{", b"[")
    if ctype.startswith("image/") or (not is_json and _looks_like_image(body)):
        return [_verify(body, "the answer body", max_pixels)]
    if not is_json:
        # A predictor returning the base64 text of the image as its whole body.
        try:
            text = body.decode("ascii").strip()
        except UnicodeDecodeError:
            raise _Fail(
                f"the answer is neither JSON nor an image "
                f"(content-type {ctype or 'not set'}, {len(body)} bytes)."
            ) from None
        return [_image_from_text(text, "the answer body", max_pixels)]
    doc = _load_json(body)
    if isinstance(doc, dict):
        if "predictions" not in doc:
            raise _Fail(
                f"the answer has no 'predictions' (keys: {_keys(doc)})."
                + _server_error(doc)
            )
        predictions = doc["predictions"]
    else:
        predictions = doc
    if not isinstance(predictions, list):
        predictions = [predictions]
    images: list[ParsedImage] = []
    for index, prediction in enumerate(predictions):
        what = f"predictions[{index}]"
        for path, value in _v1_image_values(prediction, what, depth=0):
            if isinstance(value, str):
                images.append(_image_from_text(value, path, max_pixels))
    if not images:
        first = predictions[0] if predictions else None
        shown = (
            f"predictions[0] has keys {_keys(first)}"
            if isinstance(first, dict)
            else f"{len(predictions)} prediction(s)"
        )
        extra = _server_error(first) if isinstance(first, dict) else ""
        raise _Fail(f"the answer holds no image ({shown}).{extra}")
    return images


def _v1_image_values(value: Any, path: str, depth: int) -> Iterator[tuple[str, Any]]:
    """Yield ``(path, string)`` for each image-like string in one prediction."""
    if depth > 4:
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _v1_image_values(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key in _V1_IMAGE_KEYS:
            if key in value:
                yield from _v1_image_values(value[key], f"{path}.{key}", depth + 1)
                return


# -- V2 ----------------------------------------------------------------------------


@dataclass
class _Output:
    name: str
    datatype: str
    shape: list[int]
    data: Any
    raw: bytes | None

    def describe(self) -> str:
        return f"'{self.name}' {self.datatype} {self.shape}"


def _parse_v2(
    body: bytes, header: str | None, output_name: str | None, max_pixels: int
) -> list[ParsedImage]:
    if not body:
        raise _Fail("the answer is empty.")
    tail = b""
    if header is not None:
        try:
            json_length = int(header)
        except ValueError:
            raise _Fail(
                f"{BINARY_HEADER} is not a number ({_clip(header, 40)})."
            ) from None
        if not 0 < json_length <= len(body):
            raise _Fail(
                f"{BINARY_HEADER} is {json_length} but the body has {len(body)} bytes."
            )
        body, tail = body[:json_length], body[json_length:]
    doc = _load_json(body)
    if not isinstance(doc, dict):
        raise _Fail(f"the answer is a JSON {type(doc).__name__}, not an object.")
    if "outputs" not in doc:
        raise _Fail(
            f"the answer has no 'outputs' (keys: {_keys(doc)})." + _server_error(doc)
        )
    outputs = _v2_outputs(doc["outputs"], tail)
    if not outputs:
        raise _Fail("the answer has an empty 'outputs' list.")
    if output_name is not None:
        for output in outputs:
            if output.name == output_name:
                return _decode_output(output, max_pixels)
        names = ", ".join(repr(o.name) for o in outputs)
        raise _Fail(
            f"the answer has no output '{output_name}' (outputs: {names}); "
            "fix output_name."
        )
    reasons = []
    for output in outputs:
        if output.datatype != "BYTES" and output.datatype not in _NUMERIC_DTYPES:
            reasons.append(f"{output.describe()}: not an image type")
            continue
        try:
            return _decode_output(output, max_pixels)
        except _Fail as exc:
            reasons.append(f"{output.describe()}: {exc}")
    raise _Fail("no output holds an image (" + "; ".join(reasons) + ").")


def _v2_outputs(value: Any, tail: bytes) -> list[_Output]:
    if not isinstance(value, list):
        raise _Fail("'outputs' is not a list.")
    outputs = []
    offset = 0
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _Fail(f"outputs[{index}] is not an object.")
        name, datatype, shape = (
            item.get("name"),
            item.get("datatype"),
            item.get("shape"),
        )
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise _Fail(f"outputs[{index}] lacks a string 'name' or 'datatype'.")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise _Fail(f"output '{name}' has no valid 'shape'.")
        parameters = item.get("parameters")
        size = (
            parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        )
        raw = None
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _Fail(f"output '{name}' has an invalid binary_data_size.")
            raw = tail[offset : offset + size]
            if len(raw) != size:
                raise _Fail(
                    f"output '{name}' announces {size} binary bytes but the body "
                    f"holds only {len(raw)} more."
                )
            offset += size
        outputs.append(_Output(name, datatype.upper(), shape, item.get("data"), raw))
    return outputs


def _decode_output(output: _Output, max_pixels: int) -> list[ParsedImage]:
    if output.raw is None and not isinstance(output.data, list):
        raise _Fail(f"output '{output.name}' has neither 'data' nor binary data")
    if output.datatype == "BYTES":
        return _decode_bytes_output(output, max_pixels)
    if output.datatype in _NUMERIC_DTYPES:
        return _decode_tensor_output(output, max_pixels)
    raise _Fail(f"output '{output.name}' has datatype {output.datatype}, not an image")


def _decode_bytes_output(output: _Output, max_pixels: int) -> list[ParsedImage]:
    images = []
    if output.raw is not None:
        for index, element in enumerate(_split_bytes_tensor(output.raw, output.name)):
            what = f"output '{output.name}' element {index}"
            if _looks_like_image(element):
                images.append(_verify(element, what, max_pixels))
            else:
                # Some predictors put base64 text even into the binary tail.
                try:
                    text = element.decode("ascii")
                except UnicodeDecodeError:
                    raise _Fail(f"{what} is neither an image nor base64") from None
                images.append(_image_from_text(text, what, max_pixels))
    else:
        for index, element in enumerate(_flatten(output.data)):
            what = f"output '{output.name}' element {index}"
            if not isinstance(element, str):
                raise _Fail(f"{what} is a {type(element).__name__}, not a string")
            images.append(_image_from_text(element, what, max_pixels))
    if not images:
        raise _Fail(f"output '{output.name}' is empty")
    return images


def _split_bytes_tensor(raw: bytes, name: str) -> list[bytes]:
    """Split a binary BYTES tensor: each element is a 4-byte LE length + bytes."""
    elements = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise _Fail(f"output '{name}' has a truncated element length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise _Fail(
                f"output '{name}' announces an element of {length} bytes but only "
                f"{len(raw) - offset} remain"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def _flatten(value: Any, depth: int = 0) -> Iterator[Any]:
    if depth > 8:
        raise _Fail("'data' is nested too deeply")
    if isinstance(value, list):
        for item in value:
            yield from _flatten(item, depth + 1)
    else:
        yield value


def _decode_tensor_output(output: _Output, max_pixels: int) -> list[ParsedImage]:
    try:
        import numpy as np  # numpy is only needed for tensor outputs
    except ImportError:
        raise _Fail(
            f"output '{output.name}' is an image tensor, and decoding tensors needs "
            "the tensors extra, which is not installed: "
            "pip install 'mcp-imagegen[tensors]' (it brings numpy)"
        ) from None

    shape = output.shape
    layout = _image_layout(shape)
    if layout is None:
        raise _Fail(f"output '{output.name}' has shape {shape}, not an image shape")
    batch, height, width, channels, chw = layout
    if height * width > max_pixels:
        raise _Fail(
            f"output '{output.name}' is {width}x{height} pixels, more than the "
            f"limit of {max_pixels}"
        )
    count = math.prod(shape)
    dtype = np.dtype(_NUMERIC_DTYPES[output.datatype])
    if output.raw is not None:
        if len(output.raw) != count * dtype.itemsize:
            raise _Fail(
                f"output '{output.name}' has {len(output.raw)} binary bytes; shape "
                f"{shape} of {output.datatype} needs {count * dtype.itemsize}"
            )
        array = np.frombuffer(output.raw, dtype=dtype)
    else:
        # np.asarray walks nested lists in C; ragged or non-numeric data raises.
        kind = np.float64 if dtype.kind == "f" else np.int64
        array = np.asarray(output.data, dtype=kind).reshape(-1)
        if array.size != count:
            raise _Fail(
                f"output '{output.name}' has {array.size} values; shape {shape} "
                f"needs {count}"
            )
    array = array.reshape(
        (batch, channels, height, width) if chw else (batch, height, width, channels)
    )
    if chw:
        array = array.transpose(0, 2, 3, 1)
    return [_tensor_to_png(array[i], output.name) for i in range(batch)]


def _image_layout(shape: list[int]) -> tuple[int, int, int, int, bool] | None:
    """Return ``(batch, height, width, channels, is_chw)`` or None for a non-image."""
    dims = list(shape)
    if len(dims) == 2:
        return 1, dims[0], dims[1], 1, False
    batch = 1
    if len(dims) == 4:
        batch, dims = dims[0], dims[1:]
    if len(dims) != 3 or batch < 1:
        return None
    # Prefer HWC when the last axis could be channels; else CHW.
    if dims[2] in (1, 3, 4):
        height, width, channels, chw = dims[0], dims[1], dims[2], False
    elif dims[0] in (1, 3, 4):
        channels, height, width, chw = dims[0], dims[1], dims[2], True
    else:
        return None
    if height < 1 or width < 1:
        return None
    return batch, height, width, channels, chw


def _tensor_to_png(array: np.ndarray, name: str) -> ParsedImage:
    import numpy as np
    from PIL import Image

    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise _Fail(f"output '{name}' holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 and low >= -1.0 and high <= 1.0:
            array = (array + 1.0) * 127.5  # -1..1, as many diffusion decoders emit
        elif low >= 0 and high <= 1.0:
            array = array * 255.0  # 0..1
        array = np.rint(array)
    pixels = np.clip(array, 0, 255).astype(np.uint8)
    height, width, channels = pixels.shape
    # fromarray picks L, RGB or RGBA from the array's shape.
    image = Image.fromarray(
        np.ascontiguousarray(pixels[:, :, 0] if channels == 1 else pixels)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return ParsedImage(buffer.getvalue(), "image/png", width, height)
