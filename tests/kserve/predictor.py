"""The test predictor: one real ``kserve.ModelServer`` serving every test model.

Run from the repository root::

    python -m tests.kserve.predictor --http_port 8080 --enable_grpc false

No ML: images are rendered with Pillow (see :mod:`tests.kserve.rendering`). Models:

- ``sd-v1``: the common diffusers predictor contract (V1; reads only
  ``instances[0]``; ``predictions[0].image.b64``). ``sd-v1-batch`` reads every
  instance; ``sd-v1-flat`` answers ``image_b64``; ``sd-v1-raw`` answers the raw PNG
  with no content type. ``secure`` is ``sd-v1`` behind a bearer token (401).
- ``sd-v2``: KServe-style V2: BYTES ``prompt`` in, BYTES ``image`` out (base64 in
  JSON, raw bytes with the binary extension). ``sd-v2-multi`` puts two non-image
  outputs before the image.
- ``triton-sd``: Triton Stable Diffusion style: ``prompt`` BYTES ``[1, 1]`` in,
  ``generated_image`` UINT8 ``[1, H, W, 3]`` out. ``triton-fp32`` answers FP32
  ``[1, 3, H, W]`` (CHW) in 0..1.
- faults: ``fault-invalid`` (400), ``fault-coldstart`` (503 "not ready" for the
  first ``fail_times`` attempts of each prompt), ``fault-500`` (and
  ``fault-500-if-asked``, when the instance says ``"fail": true``), ``fault-slow``
  (answers after ``delay`` seconds, asynchronously, reporting
  ``in_flight_at_start``), ``fault-noimage`` (200 without
  image), ``fault-corrupt`` (200 with a truncated PNG), ``sleeping`` (never ready).
  ``GET /test/disconnects`` counts ``fault-slow`` requests whose client hung up
  before the answer (so a test sees a cancellation reach the predictor).

Every PNG carries what the predictor received (``RECEIVED_KEY`` text chunk),
including the ``host`` and ``authorization`` headers, so tests can check the wire.
``sd-v1`` and ``sd-v2`` also take an input image and mask (V1 instance keys, V2
BYTES inputs ``image`` / ``mask_image``, base64 PNG): they are echoed as
``<name>_sha256`` and ``<name>_bytes`` of the decoded bytes, not as the text.

The server binds 127.0.0.1 only: uvicorn's config is patched before start, as
KServe hard-codes 0.0.0.0.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import collections
import hashlib
from typing import Any

import numpy as np
import uvicorn
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput, ModelNotReady
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.kserve.rendering import render_array, render_png
from tests.kserve.support import ROUTE_PREFIX, TEST_TOKEN

HEADERS_ECHOED = ("host", "authorization")


class Unauthorized(Exception):
    """Raised by the ``secure`` model; answered as 401."""


def _int(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{name} must be a number")
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a number") from None


#: Wire names of the image inputs the models read (the backend's defaults).
IMAGE_FIELDS = ("image", "mask_image")


def _image_digest(name: str, text: Any) -> dict[str, Any]:
    """Decode a base64 PNG input strictly; return its digest for the echo."""
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    if not isinstance(text, str):
        raise InvalidInput(f"{name} must be base64 text")
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise InvalidInput(f"{name} is not valid base64") from None
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise InvalidInput(f"{name} is not a PNG")
    return {
        f"{name}_sha256": hashlib.sha256(data).hexdigest(),
        f"{name}_bytes": len(data),
    }


def _echo_images(fields: dict[str, Any]) -> dict[str, Any]:
    """Return ``fields`` with each image input replaced by its digest."""
    echoed = {k: v for k, v in fields.items() if k not in IMAGE_FIELDS}
    for name in IMAGE_FIELDS:
        if name in fields:
            echoed.update(_image_digest(name, fields[name]))
    return echoed


def _echo_headers(headers: dict[str, str] | None) -> dict[str, str]:
    headers = headers or {}
    return {key: headers[key] for key in HEADERS_ECHOED if key in headers}


# -- V1 ----------------------------------------------------------------------------


class DiffusersV1Model(Model):
    """The common KServe diffusers predictor contract (V1)."""

    def __init__(self, name: str, style: str = "nested") -> None:
        super().__init__(name)
        self.style = style
        self.ready = True

    def _one(
        self, instance: Any, headers: dict[str, str] | None
    ) -> tuple[bytes, dict[str, Any]]:
        if not isinstance(instance, dict) or not isinstance(
            instance.get("prompt"), str
        ):
            raise InvalidInput("instances[0] must be an object with a string 'prompt'")
        width = _int(instance.get("width"), "width", 512)
        height = _int(instance.get("height"), "height", 512)
        seed = _int(instance.get("seed"), "seed", 0)
        received = {**_echo_images(instance), **_echo_headers(headers)}
        return render_png(seed, width, height, received), received

    async def predict(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any] | bytes:
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("expected a non-empty 'instances' list")
        if self.style != "batch":
            instances = instances[:1]  # the common predictor reads only instances[0]
        rendered = [self._one(instance, headers) for instance in instances]
        if self.style == "raw":
            return rendered[0][0]
        predictions = []
        for png, received in rendered:
            b64 = base64.b64encode(png).decode()
            if self.style == "flat":
                predictions.append({"image_b64": b64})
            else:
                predictions.append(
                    {
                        "model_name": self.name,
                        "prompt": received["prompt"],
                        "image": {"format": "PNG", "b64": b64},
                    }
                )
        return {"predictions": predictions}


class SecureV1Model(DiffusersV1Model):
    """``sd-v1`` that wants ``Authorization: Bearer TEST_TOKEN``."""

    async def predict(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any] | bytes:
        if (headers or {}).get("authorization") != f"Bearer {TEST_TOKEN}":
            raise Unauthorized("missing or invalid bearer token")
        return await super().predict(payload, headers)


class FaultV1Model(DiffusersV1Model):
    """V1 models that fail in one specific way."""

    def __init__(self, name: str, fault: str) -> None:
        super().__init__(name)
        self.fault = fault
        self.attempts: collections.Counter[str] = collections.Counter()
        self.in_flight: collections.Counter[str] = collections.Counter()

    async def healthy(self) -> bool:
        # "ready" stays True so that the server registers the model at all.
        return self.fault != "never-ready"

    async def predict(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any] | bytes:
        instance = (payload.get("instances") or [{}])[0]
        if not isinstance(instance, dict):
            instance = {}
        if self.fault == "invalid":
            raise InvalidInput("the prompt was refused by the safety checker")
        if self.fault == "coldstart":
            prompt = str(instance.get("prompt"))
            self.attempts[prompt] += 1
            if self.attempts[prompt] <= _int(
                instance.get("fail_times"), "fail_times", 2
            ):
                raise ModelNotReady(self.name)
        if self.fault == "error" or (
            self.fault == "error-if-asked" and instance.get("fail")
        ):
            raise ValueError("CUDA out of memory (simulated)")
        if self.fault == "slow":
            # Report how many requests with this prompt were in flight when this
            # one arrived, so a test can check the client's concurrency bound.
            prompt = str(instance.get("prompt"))
            self.in_flight[prompt] += 1
            instance["in_flight_at_start"] = self.in_flight[prompt]
            try:
                # Asynchronous on purpose: a blocking sleep would stall every model.
                await asyncio.sleep(float(instance.get("delay", 30)))
            finally:
                self.in_flight[prompt] -= 1
        if self.fault == "noimage":
            return {"predictions": [{"model_name": self.name, "nsfw": True}]}
        answer = await super().predict(payload, headers)
        if self.fault == "corrupt" and isinstance(answer, dict):
            image = answer["predictions"][0]["image"]
            png = base64.b64decode(image["b64"])
            image["b64"] = base64.b64encode(png[: len(png) // 2]).decode()
        return answer


# -- V2 ----------------------------------------------------------------------------


def _input(request: InferRequest, name: str) -> Any:
    found = request.get_input_by_name(name)
    if found is None:
        return None
    values = found.as_numpy().reshape(-1)
    value = values[0]
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if hasattr(value, "item") else value


def _fields(request: InferRequest) -> dict[str, Any]:
    """Read generation fields from request parameters and extra inputs."""
    fields: dict[str, Any] = {
        key: value
        for key, value in (request.parameters or {}).items()
        if key != "binary_data_output"
    }
    for name in (
        "negative_prompt",
        "width",
        "height",
        "seed",
        "num_inference_steps",
        "guidance_scale",
        "strength",
    ):
        value = _input(request, name)
        if value is not None:
            fields[name] = value
    for name in IMAGE_FIELDS:
        found = request.get_input_by_name(name)
        if found is not None:
            if found.datatype != "BYTES":
                raise InvalidInput(f"input '{name}' must be BYTES")
            fields[name] = found.as_numpy().reshape(-1)[0]
    return _echo_images(fields)


class KServeV2Model(Model):
    """KServe-style V2: BYTES prompt in, BYTES image out."""

    def __init__(self, name: str, multi: bool = False) -> None:
        super().__init__(name)
        self.multi = multi
        self.ready = True

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        prompt = _input(payload, "prompt")
        if not isinstance(prompt, str):
            raise InvalidInput("input 'prompt' (BYTES) is required")
        fields = _fields(payload)
        width = _int(fields.get("width"), "width", 512)
        height = _int(fields.get("height"), "height", 512)
        seed = _int(fields.get("seed"), "seed", 0)
        received = {"prompt": prompt, **fields, **_echo_headers(headers)}
        png = render_png(seed, width, height, received)
        binary = bool(payload.use_binary_outputs)
        for requested in payload.request_outputs or []:
            if requested.binary_data is not None:
                binary = bool(requested.binary_data)
        image = InferOutput(name="image", shape=[1], datatype="BYTES")
        # JSON answers carry base64 text; binary answers carry the PNG itself.
        value = png if binary else base64.b64encode(png)
        image.set_data_from_numpy(
            np.array([value], dtype=np.object_), binary_data=binary
        )
        outputs = [image]
        if self.multi:
            nsfw = InferOutput(name="nsfw", shape=[1], datatype="BOOL")
            nsfw.set_data_from_numpy(np.array([False]), binary_data=binary)
            echo = InferOutput(name="prompt", shape=[1], datatype="BYTES")
            echo.set_data_from_numpy(
                np.array([prompt.encode()], dtype=np.object_), binary_data=binary
            )
            outputs = [nsfw, echo, image]
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=binary,
        )


class TritonStyleModel(Model):
    """Triton Stable Diffusion style: prompt BYTES [1, 1], image tensor out."""

    def __init__(self, name: str, fp32_chw: bool = False) -> None:
        super().__init__(name)
        self.fp32_chw = fp32_chw
        self.ready = True

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        prompt_input = payload.get_input_by_name("prompt")
        if prompt_input is None or list(prompt_input.shape) != [1, 1]:
            # Triton checks shapes against the model config (max_batch_size 1).
            raise InvalidInput(
                "unexpected shape for input 'prompt' for model "
                f"'{self.name}'. Expected [-1,1], got "
                f"{None if prompt_input is None else prompt_input.shape}"
            )
        fields = _fields(payload)
        width = _int(fields.get("width"), "width", 512)
        height = _int(fields.get("height"), "height", 512)
        seed = _int(fields.get("seed"), "seed", 0)
        pixels = render_array(seed, width, height)[np.newaxis]
        if self.fp32_chw:
            tensor = (pixels.transpose(0, 3, 1, 2) / 255.0).astype(np.float32)
            output = InferOutput(
                name="generated_image", shape=list(tensor.shape), datatype="FP32"
            )
        else:
            tensor = np.ascontiguousarray(pixels)
            output = InferOutput(
                name="generated_image", shape=list(tensor.shape), datatype="UINT8"
            )
        binary = bool(payload.use_binary_outputs)
        output.set_data_from_numpy(tensor, binary_data=binary)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[output],
            use_binary_outputs=binary,
        )


# -- server --------------------------------------------------------------------------


class StripRoutePrefix:
    """ASGI middleware acting as a path-routing ingress: drops ROUTE_PREFIX."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(ROUTE_PREFIX + "/"):
            scope = {**scope, "path": path[len(ROUTE_PREFIX) :], "raw_path": None}
        await self.app(scope, receive, send)


#: Requests to ``fault-slow`` whose client went away before the answer.
DISCONNECTS: collections.Counter[str] = collections.Counter()
#: Where the test server tells ``DISCONNECTS`` (``{"fault-slow": n}``).
DISCONNECTS_PATH = "/test/disconnects"


class WatchDisconnects:
    """ASGI middleware: counts ``fault-slow`` requests abandoned by their client.

    Neither KServe nor Starlette tell a handler that its client left, so once
    the request body is read this waits for the server's next message: an
    ``http.disconnect`` before the answer started means the client aborted.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", "")) if scope["type"] == "http" else ""
        if path == DISCONNECTS_PATH:
            await JSONResponse(dict(DISCONNECTS))(scope, receive, send)
            return
        if "/fault-slow" not in path:
            await self.app(scope, receive, send)
            return
        body_read = asyncio.Event()
        answered = False

        async def read(**_: Any) -> Any:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body"):
                body_read.set()
            return message

        async def answer(message: Any) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        async def watch() -> None:
            await body_read.wait()
            if (await receive())["type"] == "http.disconnect" and not answered:
                DISCONNECTS["fault-slow"] += 1

        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, read, answer)
        finally:
            watcher.cancel()


async def _unauthorized(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=401, content={"error": str(exc)})


def _bind_loopback_only() -> None:
    original = uvicorn.Config.__init__

    def init(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        kwargs["host"] = "127.0.0.1"
        original(self, *args, **kwargs)

    uvicorn.Config.__init__ = init  # type: ignore[method-assign]


def models() -> list[Model]:
    """Return every test model."""
    return [
        DiffusersV1Model("sd-v1"),
        DiffusersV1Model("sd-v1-batch", style="batch"),
        DiffusersV1Model("sd-v1-flat", style="flat"),
        DiffusersV1Model("sd-v1-raw", style="raw"),
        SecureV1Model("secure"),
        KServeV2Model("sd-v2"),
        KServeV2Model("sd-v2-multi", multi=True),
        TritonStyleModel("triton-sd"),
        TritonStyleModel("triton-fp32", fp32_chw=True),
        FaultV1Model("fault-invalid", "invalid"),
        FaultV1Model("fault-coldstart", "coldstart"),
        FaultV1Model("fault-500", "error"),
        FaultV1Model("fault-500-if-asked", "error-if-asked"),
        FaultV1Model("fault-slow", "slow"),
        FaultV1Model("fault-noimage", "noimage"),
        FaultV1Model("fault-corrupt", "corrupt"),
        FaultV1Model("sleeping", "never-ready"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--http_port", type=int, required=True)
    args, _ = parser.parse_known_args()
    _bind_loopback_only()
    from kserve.model_server import app  # the FastAPI app KServe serves

    app.add_middleware(StripRoutePrefix)
    app.add_middleware(WatchDisconnects)
    app.add_exception_handler(Unauthorized, _unauthorized)
    ModelServer(http_port=args.http_port, enable_grpc=False).start(models())


if __name__ == "__main__":
    main()
