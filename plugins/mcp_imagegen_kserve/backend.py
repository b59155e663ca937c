"""The ``kserve`` backend: text-to-image models served by KServe or Triton.

One instance talks to one model over the V1 protocol (``:predict`` with
``instances``) or V2, the Open Inference Protocol (``/infer`` with tensors). N
images are N requests with seeds ``seed, seed+1, ...`` in flight at most
``max_concurrency`` at a time, unless V1 ``batch_instances`` sends them in one.
Transient failures (connection errors, 502/503/504) are retried with jittered
exponential backoff within a deadline; 4xx answers never are. A request lost on
a kept-alive connection the server had closed is retried at once; a connection
refused at the first attempt (a wrong URL) is not retried at all.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import quote

import anyio
import httpx
import structlog

from mcp_imagegen import (
    BackendError,
    BackendNotReadyError,
    BackendRejectedError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadBackendResponseError,
    Capabilities,
    ComponentSettings,
    ConfigurationError,
    GeneratedImage,
    GenerationRequest,
    Health,
    InferenceBackend,
    ProgressReporter,
    ValidationError,
    __version__,
    redact_url_text,
)
from mcp_imagegen_kserve.responses import (
    ParsedImage,
    parse_v1_response,
    parse_v2_response,
)
from mcp_imagegen_kserve.settings import KServeSettings, Scalar

log = structlog.get_logger(__name__)

#: Statuses worth another attempt: gateways and cold starts (model not ready).
RETRYABLE_STATUSES = frozenset({502, 503, 504})
#: Transport errors of a request on a kept-alive connection the server had closed.
_STALE_CONNECTION_ERRORS = (
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
# V2 datatypes of the generation fields when they are sent as extra inputs.
_INPUT_DATATYPES = {
    "negative_prompt": "BYTES",
    "width": "INT32",
    "height": "INT32",
    "seed": "INT64",
    "steps": "INT32",
    "guidance_scale": "FP32",
}
_ERROR_TEXT_LIMIT = 300
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: httpx.Headers
    body: bytes


class KServeBackend(InferenceBackend):
    """Generates images with a model behind a KServe (or Triton) endpoint.

    Args:
        settings: The validated ``[backends.<name>]`` table.
        instance_name: The table's name, used in messages and logs.
        transport: An httpx transport to use instead of the network; for tests that
            inject faults and for custom networking.
    """

    name = "kserve"
    Settings = KServeSettings
    settings: KServeSettings

    def __init__(
        self,
        settings: ComponentSettings,
        *,
        instance_name: str = "",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not isinstance(settings, KServeSettings):
            settings = KServeSettings.model_validate(settings.model_dump())
        super().__init__(settings, instance_name=instance_name)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots: anyio.Semaphore | None = None
        model = quote(self.settings.model, safe="")
        base = self.settings.url
        if self.settings.protocol == "v1":
            self.infer_url = f"{base}/v1/models/{model}:predict"
            self.ready_url = f"{base}/v1/models/{model}"
        else:
            self.infer_url = f"{base}/v2/models/{model}/infer"
            self.ready_url = f"{base}/v2/models/{model}/ready"

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool (no request is sent: the model may be asleep)."""
        if self._client is not None:
            return
        settings = self.settings
        headers = {"User-Agent": f"mcp-imagegen/{__version__}"}
        if settings.token is not None:
            headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
        if settings.host_header:
            headers["Host"] = settings.host_header
        pool = settings.max_concurrency + 2  # plus health checks
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            verify=self._tls_verification(),
            transport=self._transport,
            follow_redirects=False,
        )
        self._slots = anyio.Semaphore(settings.max_concurrency)
        log.info(
            "kserve_backend_started",
            backend=self.instance_name,
            url=self.infer_url,
            protocol=settings.protocol,
            model=settings.model,
        )

    async def aclose(self) -> None:
        """Close the connection pool; safe to call more than once."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _tls_verification(self) -> ssl.SSLContext | bool:
        settings = self.settings
        if settings.ca_bundle is not None:
            try:
                return ssl.create_default_context(cafile=str(settings.ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"backends.{self.instance_name}.ca_bundle: cannot load "
                    f"{settings.ca_bundle} ({exc})."
                ) from None
        return settings.verify_tls

    # -- what this instance offers ---------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """Limits and features as configured for this model."""
        s = self.settings
        return Capabilities(
            min_side=s.min_side,
            max_side=s.max_side,
            side_multiple=s.side_multiple,
            max_pixels=s.max_pixels,
            max_images=s.max_images,
            supports_negative_prompt=s.supports_negative_prompt,
            supports_seed=s.supports_seed,
            supports_steps=s.supports_steps,
            supports_guidance_scale=s.supports_guidance_scale,
            default_steps=s.default_steps,
            models=[s.model],
        )

    async def check_health(self) -> Health:
        """Ask the model-ready endpoint whether the model can serve now.

        ``ok``: ready. ``degraded``: the server answers but the model is not ready
        (loading, scaled to zero). ``unavailable``: unreachable, unknown model,
        refused credentials.
        """
        client = self._client
        if client is None:
            return Health(status="unavailable", detail="the backend is not started")
        begun = time.perf_counter()
        try:
            response = await client.get(
                self.ready_url, timeout=httpx.Timeout(self.settings.connect_timeout)
            )
        except httpx.HTTPError as exc:
            return Health(
                status="unavailable",
                detail=f"cannot reach {self.ready_url} ({_describe_http_error(exc)})",
            )
        latency = round((time.perf_counter() - begun) * 1000, 1)
        status = response.status_code
        text = _error_text(response.content, response.headers.get("content-type"))
        model = self.settings.model
        if status == 200 and (self.settings.protocol == "v2" or _v1_ready(response)):
            return Health(
                status="ok",
                detail=f"model '{model}' is ready ({self.ready_url})",
                latency_ms=latency,
            )
        # Reachable but not ready: 200 with "ready": false (V1), 503 while loading,
        # gateways during scale-from-zero, and Triton's 400 for an unready model.
        triton_not_ready = status == 400 and self.settings.protocol == "v2"
        if status == 200 or status in RETRYABLE_STATUSES or triton_not_ready:
            return Health(
                status="degraded",
                detail=f"model '{model}' is not ready ({status}"
                + (f": {text}" if text else "")
                + "); it may be loading or scaled to zero",
                latency_ms=latency,
            )
        hint = self._status_hint(status)
        return Health(
            status="unavailable",
            detail=self._redact(
                f"{self.ready_url} answered {status}"
                + (f": {text}" if text else "")
                + (f". {hint}" if hint else "")
            ),
            latency_ms=latency,
        )

    # -- generation ----------------------------------------------------------------

    async def generate(
        self, request: GenerationRequest, progress: ProgressReporter
    ) -> list[GeneratedImage]:
        """Generate ``request.num_images`` images; image ``i`` uses ``seed_for(i)``.

        Sends heartbeat progress every ``heartbeat_interval`` seconds while waiting.

        Raises:
            ValidationError: if the request names a model this instance does not serve.
            BackendUnavailableError: the server cannot be reached (after retries).
            BackendNotReadyError: the model stayed not ready (503) within the deadline.
            BackendTimeoutError: no answer within ``timeout`` / ``deadline``.
            BackendRejectedError: the server refused the request (4xx).
            BadBackendResponseError: the answer holds no usable image.
            BackendError: the predictor failed (5xx).
        """
        client, slots = self._started()
        model = self.settings.model
        if request.model is not None and request.model != model:
            raise ValidationError(
                f"Backend '{self.instance_name}' serves model '{model}', not "
                f"'{request.model}'; configure another [backends.<name>] instance."
            )
        tracker = _Progress(progress, request.num_images, model, self.settings)
        await tracker.send(
            0,
            f"asking model '{model}' for {request.num_images} image(s)",
        )
        failures: list[BackendError] = []
        images: list[GeneratedImage] = []
        async with anyio.create_task_group() as group:
            group.start_soon(tracker.heartbeat)
            try:
                if (
                    self.settings.protocol == "v1"
                    and self.settings.batch_instances
                    and request.num_images > 1
                ):
                    images = await self._generate_batch(client, slots, request, tracker)
                else:
                    images = await self._generate_each(client, slots, request, tracker)
            except BackendError as exc:
                failures.append(exc)
            except Exception as exc:  # a bug must still reach the user as typed
                failures.append(self._unexpected(exc))
            finally:
                group.cancel_scope.cancel()
        if failures:
            raise failures[0]
        return images

    def _started(self) -> tuple[httpx.AsyncClient, anyio.Semaphore]:
        if self._client is None or self._slots is None:
            raise BackendUnavailableError(
                f"KServe backend '{self.instance_name}' is not started."
            )
        return self._client, self._slots

    async def _generate_each(
        self,
        client: httpx.AsyncClient,
        slots: anyio.Semaphore,
        request: GenerationRequest,
        tracker: _Progress,
    ) -> list[GeneratedImage]:
        results: list[GeneratedImage | None] = [None] * request.num_images
        failures: list[BackendError] = []

        async def one(index: int) -> None:
            try:
                async with slots:
                    payload = self._payload(request, [index])
                    parsed = await self._call(client, payload, tracker)
                results[index] = self._image(request, index, parsed[0])
                await tracker.image_done()
            except BackendError as exc:
                failures.append(exc)
                group.cancel_scope.cancel()
            except Exception as exc:  # a bug must still reach the user as typed
                failures.append(self._unexpected(exc))
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for index in range(request.num_images):
                group.start_soon(one, index)
        if failures:
            raise failures[0]
        return [image for image in results if image is not None]

    async def _generate_batch(
        self,
        client: httpx.AsyncClient,
        slots: anyio.Semaphore,
        request: GenerationRequest,
        tracker: _Progress,
    ) -> list[GeneratedImage]:
        indexes = list(range(request.num_images))
        async with slots:
            parsed = await self._call(client, self._payload(request, indexes), tracker)
        if len(parsed) < request.num_images:
            self._fail(
                BadBackendResponseError,
                f"asked for {request.num_images} instances in one request but got "
                f"{len(parsed)} image(s); the predictor probably reads only "
                "instances[0]: set batch_instances = false.",
            )
        images = [self._image(request, i, parsed[i]) for i in indexes]
        for _ in indexes:
            await tracker.image_done()
        return images

    def _image(
        self, request: GenerationRequest, index: int, parsed: ParsedImage
    ) -> GeneratedImage:
        if (parsed.width, parsed.height) != (request.width, request.height):
            log.info(
                "kserve_image_size_differs",
                backend=self.instance_name,
                requested=f"{request.width}x{request.height}",
                received=f"{parsed.width}x{parsed.height}",
            )
        return GeneratedImage(
            data=parsed.data,
            mime_type=parsed.mime_type,
            width=parsed.width,
            height=parsed.height,
            seed=request.seed_for(index) if self.settings.supports_seed else None,
            model=self.settings.model,
        )

    # -- request bodies ------------------------------------------------------------

    def _fields(
        self, request: GenerationRequest, index: int
    ) -> list[tuple[str, Scalar]]:
        """Return ``(field, value)`` of the generation fields this model takes."""
        s = self.settings
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
        names = s.wire_names()
        return [(field, value) for field, value in fields if names[field]]

    def _payload(
        self, request: GenerationRequest, indexes: list[int]
    ) -> dict[str, Any]:
        s = self.settings
        names = s.wire_names()
        extra: dict[str, Scalar] = {**s.extra_parameters, **request.parameters}
        if s.protocol == "v1":
            instances = [
                {
                    **extra,
                    s.prompt_input: request.prompt,
                    **{names[f]: v for f, v in self._fields(request, index)},
                }
                for index in indexes
            ]
            return {"instances": instances}
        (index,) = indexes
        shape = list(s.prompt_shape)
        inputs: list[dict[str, Any]] = [
            {
                "name": s.prompt_input,
                "shape": shape,
                "datatype": "BYTES",
                "data": [request.prompt],
            }
        ]
        parameters = dict(extra)
        for field, value in self._fields(request, index):
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

    # -- one HTTP exchange, with retries -----------------------------------------------

    async def _call(
        self, client: httpx.AsyncClient, payload: dict[str, Any], tracker: _Progress
    ) -> list[ParsedImage]:
        reply = await self._post(client, payload, tracker)
        where = self._where()
        if self.settings.protocol == "v1":
            parse = functools.partial(
                parse_v1_response,
                reply.body,
                content_type=reply.headers.get("content-type"),
                where=where,
                max_pixels=self.settings.max_image_pixels,
            )
        else:
            parse = functools.partial(
                parse_v2_response,
                reply.body,
                headers=reply.headers,
                output_name=self.settings.output_name,
                where=where,
                max_pixels=self.settings.max_image_pixels,
            )
        # Decoding and verifying a large image takes tens of milliseconds.
        return await anyio.to_thread.run_sync(parse)

    async def _post(
        self, client: httpx.AsyncClient, payload: dict[str, Any], tracker: _Progress
    ) -> _Reply:
        s = self.settings
        content = json.dumps(payload, separators=(",", ":")).encode()
        request_id = str(payload.get("id") or uuid.uuid4().hex)
        begun = time.monotonic()
        deadline = begun + s.deadline
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            timeout = httpx.Timeout(
                min(s.timeout, remaining),
                connect=min(s.connect_timeout, remaining),
                pool=None,
            )
            retry_after: float | None = None
            at_once = False  # retry without backoff: nothing is wrong with the server
            wire = _Wire()
            try:
                reply = await self._send(client, content, timeout, request_id, wire)
            except httpx.ConnectError as exc:
                if _caused_by(exc, socket.gaierror):
                    self._fail(
                        BackendUnavailableError,
                        f"cannot resolve the host of {s.url} "
                        f"({_describe_http_error(exc)}); check url.",
                    )
                if _caused_by(exc, ssl.SSLError):
                    self._fail(
                        BackendUnavailableError,
                        f"TLS handshake failed ({_describe_http_error(exc)}); check "
                        "the URL's scheme, ca_bundle or verify_tls.",
                    )
                if attempt == 1 and _connection_refused(exc):
                    self._refused()
                failure: tuple[type[BackendError], str] = (
                    BackendUnavailableError,
                    f"cannot connect ({_describe_http_error(exc)}).",
                )
            except httpx.ConnectTimeout:
                failure = (
                    BackendUnavailableError,
                    f"cannot connect (no connection within "
                    f"{min(s.connect_timeout, remaining):g} s).",
                )
            except httpx.TimeoutException:
                if remaining < s.timeout:
                    message = (
                        f"model '{s.model}' did not answer before the deadline of "
                        f"{s.deadline:g} s (attempt {attempt}); raise deadline."
                    )
                else:
                    message = (
                        f"model '{s.model}' did not answer within {s.timeout:g} s; "
                        "raise timeout for slow models."
                    )
                self._fail(BackendTimeoutError, message)
            except httpx.HTTPError as exc:
                broke = (
                    "the connection broke while waiting for the answer "
                    f"({_describe_http_error(exc)})."
                )
                if not (wire.stale and isinstance(exc, _STALE_CONNECTION_ERRORS)):
                    self._fail(BackendUnavailableError, broke)
                # A pooled keep-alive connection the server had already closed
                # (KServe drops it after a 500): the request never reached the
                # model, so sending it again on a fresh connection is safe.
                failure = (BackendUnavailableError, broke)
                at_once = True
            else:
                log.info(
                    "kserve_response",
                    backend=self.instance_name,
                    model=s.model,
                    status=reply.status,
                    attempt=attempt,
                    bytes=len(reply.body),
                    duration_ms=round((time.monotonic() - begun) * 1000, 1),
                )
                if 200 <= reply.status < 300:
                    return reply
                failure = self._status_failure(reply)
                if reply.status not in RETRYABLE_STATUSES:
                    self._fail(*failure)
                retry_after = _retry_after(reply.headers)
            elapsed = time.monotonic() - begun
            if attempt > s.max_retries:
                self._fail(
                    failure[0],
                    f"{failure[1]} Gave up after {attempt} attempt(s) in "
                    f"{elapsed:.1f} s (max_retries = {s.max_retries}).",
                )
            wait = 0.0 if at_once else backoff_delay(attempt, s, retry_after)
            if time.monotonic() + wait >= deadline:
                self._fail(
                    failure[0],
                    f"{failure[1]} Gave up after {attempt} attempt(s) in "
                    f"{elapsed:.1f} s: the deadline of {s.deadline:g} s would pass.",
                )
            log.warning(
                "kserve_retry",
                backend=self.instance_name,
                model=s.model,
                attempt=attempt,
                wait_s=round(wait, 2),
                reason=failure[1],
            )
            await tracker.note(
                f"connection to model '{s.model}' was stale; retry {attempt}/"
                f"{s.max_retries} at once"
                if at_once
                else f"model '{s.model}' not available yet; retry {attempt}/"
                f"{s.max_retries} in {wait:.1f} s"
            )
            await anyio.sleep(wait)

    async def _send(
        self,
        client: httpx.AsyncClient,
        content: bytes,
        time_limits: httpx.Timeout,
        request_id: str,
        wire: _Wire,
    ) -> _Reply:
        cap = self.settings.max_response_bytes
        request = client.build_request(
            "POST",
            self.infer_url,
            content=content,
            headers={"Content-Type": "application/json", "X-Request-ID": request_id},
            timeout=time_limits,
            extensions={"trace": wire},
        )
        response = await client.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                self._too_large(cap)
            chunks = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    self._too_large(cap)
                chunks.append(chunk)
        finally:
            await response.aclose()
        return _Reply(response.status_code, response.headers, b"".join(chunks))

    def _refused(self) -> NoReturn:
        # A refusal before the server ever answered is a wrong address, not a
        # cold start (Knative's activator holds connections while scaling from
        # zero): retrying would only make a one-shot CLI wait for a minute.
        key = f"backends.{self.instance_name}.url"
        self._fail(
            BackendUnavailableError,
            f"nothing accepts connections at {redact_url_text(self.settings.url)}"
            f" (connection refused); check {key}. Not retried: a refused first "
            "connection means a wrong host or port, not a model that is loading.",
        )

    def _too_large(self, cap: int) -> NoReturn:
        self._fail(
            BadBackendResponseError,
            f"the answer is larger than max_response_bytes ({cap} bytes).",
        )

    # -- errors ----------------------------------------------------------------------

    def _where(self) -> str:
        return f"KServe backend '{self.instance_name}' ({self.infer_url})"

    def _redact(self, text: str) -> str:
        token = self.settings.token
        if token is not None and token.get_secret_value():
            text = text.replace(token.get_secret_value(), "**********")
        return text

    def _fail(self, cls: type[BackendError], message: str) -> NoReturn:
        error = cls(self._redact(f"{self._where()}: {message}"))
        log.warning(
            "kserve_request_failed",
            backend=self.instance_name,
            error_type=cls.__name__,
            error=str(error),
        )
        raise error

    def _unexpected(self, exc: Exception) -> BackendError:
        log.exception("kserve_unexpected_error", backend=self.instance_name)
        return BackendError(
            self._redact(
                f"{self._where()}: unexpected error {type(exc).__name__}: {exc}"
            )
        )

    def _status_failure(self, reply: _Reply) -> tuple[type[BackendError], str]:
        status = reply.status
        model = self.settings.model
        text = _error_text(reply.body, reply.headers.get("content-type"))
        said = f": {text}" if text else ""
        label = f"{status} {httpx.codes.get_reason_phrase(status)}".strip()
        hint = self._status_hint(status)
        hint = f" {hint}" if hint else ""
        if status == 503:
            return (
                BackendNotReadyError,
                f"model '{model}' is not ready ({label}{said}); it may be loading "
                "or scaling from zero.",
            )
        if status in RETRYABLE_STATUSES:
            return (
                BackendUnavailableError,
                f"the gateway could not reach model '{model}' ({label}{said}).",
            )
        if 300 <= status < 400:
            location = httpx.URL(reply.headers.get("location", "")).copy_with(
                query=None, fragment=None
            )
            return (
                BackendRejectedError,
                f"the request was redirected ({label}) to {location or 'elsewhere'}; "
                "an authentication proxy? Point url at the model server itself "
                "and set token.",
            )
        if 400 <= status < 500:
            return (
                BackendRejectedError,
                f"model '{model}' rejected the request ({label}{said}).{hint}",
            )
        return BackendError, f"model '{model}' failed ({label}{said}).{hint}"

    def _status_hint(self, status: int) -> str:
        if status in (401, 403):
            env = f"MCP_IMAGEGEN_BACKENDS__{self.instance_name.upper()}__TOKEN"
            return f"Check the token ({env})."
        if status == 404:
            return (
                f"Check model ('{self.settings.model}') and url: the model name in "
                "the path can differ from the InferenceService name."
            )
        if status == 422:
            return (
                "The body does not fit the model's V2 schema; check prompt_input, "
                "prompt_shape and parameters_in."
            )
        return ""


class _Wire:
    """What one attempt did on the wire, learned from httpcore's trace events.

    Passed as the request's ``trace`` extension. A transport without these events
    (a test's ``MockTransport``) never looks stale, so nothing is retried there.
    """

    def __init__(self) -> None:
        self.connected = False
        self.sent = False
        self.answered = False

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        if event.startswith(("connection.connect_tcp.", "connection.connect_unix")):
            self.connected = True
        elif event.endswith(".send_request_headers.started"):
            self.sent = True
        elif event.endswith(".receive_response_headers.complete"):
            self.answered = True

    @property
    def stale(self) -> bool:
        """Whether the request went out on a reused connection and got no answer."""
        return self.sent and not self.connected and not self.answered


class _Progress:
    """Reports strictly increasing progress: per image, plus heartbeats between.

    ``done`` counts finished images; while waiting, a fraction that grows with
    elapsed time but never reaches 1 is added, so every report moves forward (MCP
    requires progress to increase) and clients that reset their timeout on
    progress keep the call alive.
    """

    def __init__(
        self,
        report: ProgressReporter,
        total: int,
        model: str,
        settings: KServeSettings,
    ) -> None:
        self._report: Callable[[float, float | None, str | None], Awaitable[None]] = (
            report
        )
        self.total = total
        self.model = model
        self.done = 0
        self._interval = settings.heartbeat_interval
        self._scale = max(settings.timeout, 1.0)
        self._last = -1.0
        self._begun = time.monotonic()
        self._lock = anyio.Lock()

    def _elapsed(self) -> float:
        return time.monotonic() - self._begun

    def _partial(self) -> float:
        elapsed = self._elapsed()
        return self.done + elapsed / (elapsed + self._scale)

    async def send(self, done: float, message: str) -> None:
        async with self._lock:
            value = done if done > self._last else math.nextafter(self._last, math.inf)
            self._last = value
            try:
                await self._report(value, float(self.total), message)
            except Exception as exc:  # a lost progress report must not fail the call
                log.debug(
                    "kserve_progress_failed", error=f"{type(exc).__name__}: {exc}"
                )

    async def heartbeat(self) -> None:
        while True:
            await anyio.sleep(self._interval)
            message = f"waiting for model '{self.model}' — {self._elapsed():.0f} s"
            if self.total > 1:
                message += f" ({self.done}/{self.total} images done)"
            await self.send(self._partial(), message)

    async def note(self, message: str) -> None:
        await self.send(self._partial(), message)

    async def image_done(self) -> None:
        self.done += 1
        await self.send(
            self.done,
            f"received image {self.done}/{self.total} from model '{self.model}'",
        )


def backoff_delay(
    attempt: int, settings: KServeSettings, retry_after: float | None = None
) -> float:
    """Return the wait before attempt ``attempt + 1``, in seconds.

    Exponential (``retry_backoff * 2**(attempt-1)``, capped at
    ``retry_backoff_max``) with jitter in [50 %, 100 %], so that many clients
    waiting on one cold start do not retry in lockstep. A server's
    ``Retry-After`` lengthens the wait, up to ``retry_backoff_max``.
    """
    growth = 2.0 ** min(attempt - 1, 60)
    wait: float = min(settings.retry_backoff_max, settings.retry_backoff * growth)
    wait *= random.uniform(0.5, 1.0)
    if retry_after is not None:
        wait = max(wait, min(retry_after, settings.retry_backoff_max))
    return wait


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Tell whether ``kind`` is somewhere in the cause chain of ``exc``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _connection_refused(exc: BaseException) -> bool:
    """Tell whether every address tried refused the connection (nothing listens)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        if isinstance(current, BaseExceptionGroup):
            # anyio groups the failures of a host with several addresses.
            return all(_connection_refused(inner) for inner in current.exceptions)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _v1_ready(response: httpx.Response) -> bool:
    """Read ``{"ready": ...}`` of a V1 model-ready answer (absent means ready)."""
    try:
        doc = json.loads(response.content)
    except ValueError:
        return True
    return not (isinstance(doc, dict) and doc.get("ready") is False)


def _describe_http_error(exc: httpx.HTTPError) -> str:
    # httpx's ReadError often has no text of its own; the OS error says more.
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or (str(cause) if cause is not None else "") or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 3600 else None


def _error_text(body: bytes, content_type: str | None) -> str:
    """Return the server's error text, compact and truncated, or ``""``."""
    if not body:
        return ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(body)} bytes of binary data"
    message: Any = None
    if "json" in (content_type or "") or text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            for key in ("error", "detail", "message"):
                if key in doc:
                    message = doc[key]
                    break
    if isinstance(message, list):
        # FastAPI 422: [{"loc": [...], "msg": "...", ...}, ...]
        parts = []
        for item in message[:5]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{loc}: {item.get('msg', '')}".strip(": "))
            else:
                parts.append(str(item))
        message = "; ".join(parts)
    if message is None:
        message = _TAG.sub(" ", text) if "<" in text else text
    compact = " ".join(str(message).split()).rstrip(".")
    if len(compact) > _ERROR_TEXT_LIMIT:
        compact = compact[: _ERROR_TEXT_LIMIT - 1] + "…"
    return compact
