"""Request bodies of the ``kserve`` backend: V1 ``instances`` and V2 tensors.

V1 sends one instance per image (several in one body with ``batch_instances``);
V2 sends the prompt as a ``BYTES`` tensor and the generation fields either as
``parameters`` or as extra input tensors, asking for binary output when
``binary_data`` is set.

An input image and mask (image-to-image, inpainting) travel as base64 PNG text:
V1 in the instance, V2 as ``BYTES`` input tensors whose JSON ``data`` element is
that text. Never as raw bytes in the binary extension: KServe's Python server
(0.21) turns every binary ``BYTES`` input back into UTF-8 JSON text and fails on
PNG bytes, so base64 is the form every KServe and Triton predictor can read.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from mcp_imagegen import GenerationRequest
from mcp_imagegen_kserve.settings import KServeSettings, Scalar

# V2 datatypes of the generation fields when they are sent as extra inputs.
_INPUT_DATATYPES = {
    "negative_prompt": "BYTES",
    "width": "INT32",
    "height": "INT32",
    "seed": "INT64",
    "steps": "INT32",
    "guidance_scale": "FP32",
    "strength": "FP32",
}


def generation_fields(
    settings: KServeSettings, request: GenerationRequest, index: int
) -> list[tuple[str, Scalar]]:
    """Return ``(field, value)`` of the generation fields this model takes.

    Args:
        settings: The backend's settings (what the model supports, wire names).
        request: The generation request.
        index: Which image of the request (it picks the seed).
    """
    s = settings
    fields: list[tuple[str, Scalar]] = []
    if request.negative_prompt and s.supports_negative_prompt:
        fields.append(("negative_prompt", request.negative_prompt))
    fields += [("width", request.width), ("height", request.height)]
    if s.supports_seed:
        fields.append(("seed", request.seed_for(index)))
    steps = request.steps if request.steps is not None else s.default_steps
    if steps is not None and s.supports_steps:
        # default_steps is what clients are shown; sending it makes it true
        # (a predictor's own default, 50 for diffusers, would apply otherwise).
        fields.append(("steps", steps))
    if request.guidance_scale is not None and s.supports_guidance_scale:
        fields.append(("guidance_scale", request.guidance_scale))
    if request.image is not None and request.strength is not None:
        # Without an input image strength means nothing: text-to-image bodies
        # stay exactly as they were.
        fields.append(("strength", request.strength))
    names = s.wire_names()
    return [(field, value) for field, value in fields if names[field]]


class Base64Text(str):
    """Base64 text of an input image: sent verbatim, never JSON-escaped.

    Base64 holds no character JSON escapes, so :func:`encode_payload` splices
    it into the body instead of running megabytes through the JSON encoder
    (which took ~30 ms per MB here).
    """

    __slots__ = ()


def image_fields(request: GenerationRequest) -> list[tuple[str, Base64Text]]:
    """Return ``(field, base64 PNG)`` of the request's input image and mask.

    Empty for text-to-image. The backend has checked before that the model takes
    what the request carries (``image_input``, ``mask``).

    Args:
        request: The generation request.
    """
    fields: list[tuple[str, Base64Text]] = []
    for field, data in (("image", request.image), ("mask", request.mask)):
        if data is not None:
            fields.append((field, Base64Text(base64.b64encode(data).decode("ascii"))))
    return fields


def build_payload(
    settings: KServeSettings, request: GenerationRequest, indexes: list[int]
) -> dict[str, Any]:
    """Return the request body for images ``indexes`` of ``request``.

    Args:
        settings: The backend's settings.
        request: The generation request.
        indexes: The images this body asks for; exactly one for V2.
    """
    if settings.protocol == "v1":
        return _v1_payload(settings, request, indexes)
    (index,) = indexes
    return _v2_payload(settings, request, index)


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Return ``payload`` as compact JSON bytes, the body sent on the wire.

    :class:`Base64Text` values are encoded as a short placeholder and then put in
    place byte for byte: the same JSON, without escaping megabytes of image text.
    """
    blobs: dict[str, Base64Text] = {}
    token = uuid.uuid4().hex

    def swap(value: Any) -> Any:
        if isinstance(value, Base64Text):
            key = f"{token}-{len(blobs)}"
            blobs[key] = value
            return key
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    body = json.dumps(swap(payload), separators=(",", ":")).encode()
    if not blobs:
        return body
    # Keys appear in the body in the order swap() made them (dicts keep their
    # order); the token is random per body, so no prompt holds it by chance.
    parts: list[bytes] = []
    rest = body
    for key, text in blobs.items():
        before, _, rest = rest.partition(f'"{key}"'.encode())
        parts += [before, b'"', text.encode("ascii"), b'"']
    parts.append(rest)
    return b"".join(parts)


def _extra(settings: KServeSettings, request: GenerationRequest) -> dict[str, Scalar]:
    return {**settings.extra_parameters, **request.parameters}


def _v1_payload(
    settings: KServeSettings, request: GenerationRequest, indexes: list[int]
) -> dict[str, Any]:
    names = settings.wire_names()
    extra = _extra(settings, request)
    # Encoded once: the same input image goes into every instance.
    images = {names[field]: text for field, text in image_fields(request)}
    instances = [
        {
            **extra,
            settings.prompt_input: request.prompt,
            **{names[f]: v for f, v in generation_fields(settings, request, index)},
            **images,
        }
        for index in indexes
    ]
    return {"instances": instances}


def _v2_payload(
    settings: KServeSettings, request: GenerationRequest, index: int
) -> dict[str, Any]:
    s = settings
    names = s.wire_names()
    shape = list(s.prompt_shape)
    inputs: list[dict[str, Any]] = [
        {
            "name": s.prompt_input,
            "shape": shape,
            "datatype": "BYTES",
            "data": [request.prompt],
        }
    ]
    parameters = _extra(s, request)
    for field, value in generation_fields(s, request, index):
        if s.parameters_in == "parameters":
            parameters[names[field]] = value
        else:
            inputs.append(
                {
                    "name": names[field],
                    "shape": shape,
                    "datatype": _INPUT_DATATYPES[field],
                    "data": [value],
                }
            )
    for field, text in image_fields(request):
        # Always a tensor, whatever parameters_in says: parameters are for
        # scalars, and a predictor finds an image among its inputs.
        inputs.append(
            {"name": names[field], "shape": shape, "datatype": "BYTES", "data": [text]}
        )
    if s.binary_data:
        parameters["binary_data_output"] = True
    payload: dict[str, Any] = {"id": uuid.uuid4().hex, "inputs": inputs}
    if parameters:
        payload["parameters"] = parameters
    if s.output_name:
        payload["outputs"] = [
            {"name": s.output_name, "parameters": {"binary_data": s.binary_data}}
        ]
    return payload
