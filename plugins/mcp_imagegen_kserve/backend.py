"""The ``kserve`` backend: text-to-image models served by KServe or Triton.

One instance talks to one model over the V1 protocol (``:predict`` with
``instances``) or V2, the Open Inference Protocol (``/infer`` with tensors). N
images are N requests with seeds ``seed, seed+1, ...`` in flight at most
``max_concurrency`` at a time, unless V1 ``batch_instances`` sends them in one.
Transient failures (connection errors, 502/503/504) are retried with jittered
exponential backoff within a deadline; 4xx answers never are. A request lost on
a kept-alive connection the server had closed is retried at once; a connection
refused at the first attempt (a wrong URL) is not retried at all.

The parts, one module each: request bodies (:mod:`~mcp_imagegen_kserve.payloads`),
HTTP and the attempt loop (:mod:`~mcp_imagegen_kserve.exchange`), the retry policy
(:mod:`~mcp_imagegen_kserve.retries`), typed errors
(:mod:`~mcp_imagegen_kserve.failures`), progress heartbeats
(:mod:`~mcp_imagegen_kserve.progress`), health (:mod:`~mcp_imagegen_kserve.health`)
and answers (:mod:`~mcp_imagegen_kserve.responses`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio
import structlog

from mcp_imagegen import (
    BackendError,
    BackendUnavailableError,
    BadBackendResponseError,
    Capabilities,
    ComponentSettings,
    GeneratedImage,
    GenerationRequest,
    Health,
    InferenceBackend,
    ProgressReporter,
    ValidationError,
)
from mcp_imagegen_kserve.failures import Failures
from mcp_imagegen_kserve.payloads import build_payload
from mcp_imagegen_kserve.progress import ProgressTracker
from mcp_imagegen_kserve.responses import (
    ParsedImage,
    parse_v1_response,
    parse_v2_response,
)
from mcp_imagegen_kserve.settings import KServeSettings

if TYPE_CHECKING:
    import httpx

    from mcp_imagegen_kserve.exchange import Exchange, Reply

log = structlog.get_logger(__name__)


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
        self._exchange: Exchange | None = None
        self._slots: anyio.Semaphore | None = None
        model = quote(self.settings.model, safe="")
        base = self.settings.url
        if self.settings.protocol == "v1":
            self.infer_url = f"{base}/v1/models/{model}:predict"
            self.ready_url = f"{base}/v1/models/{model}"
        else:
            self.infer_url = f"{base}/v2/models/{model}/infer"
            self.ready_url = f"{base}/v2/models/{model}/ready"
        self._failures = Failures(self.settings, instance_name, self.infer_url)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the connection pool (no request is sent: the model may be asleep)."""
        if self._client is not None:
            return
        # Here, not at import: httpx loads only when a kserve backend is configured.
        from mcp_imagegen_kserve.exchange import Exchange, open_client

        settings = self.settings
        self._client = open_client(settings, self.instance_name, self._transport)
        self._exchange = Exchange(
            self._client, self.infer_url, settings, self._failures
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
        self._exchange = None
        if client is not None:
            await client.aclose()

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
            image_input=s.image_input,
            mask=s.mask,
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
        from mcp_imagegen_kserve.health import check_ready

        return await check_ready(client, self.ready_url, self.settings, self._failures)

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
        exchange, slots = self._started()
        model = self.settings.model
        if request.model is not None and request.model != model:
            raise ValidationError(
                f"Backend '{self.instance_name}' serves model '{model}', not "
                f"'{request.model}'; configure another [backends.<name>] instance."
            )
        self._check_image_input(request)
        tracker = ProgressTracker(progress, request.num_images, model, self.settings)
        await tracker.send(
            0,
            f"asking model '{model}' for {request.num_images} image(s)",
        )
        batch = (
            self.settings.protocol == "v1"
            and self.settings.batch_instances
            and request.num_images > 1
        )
        generate = self._generate_batch if batch else self._generate_each
        failures: list[BackendError] = []
        images: list[GeneratedImage] = []
        async with anyio.create_task_group() as group:
            group.start_soon(tracker.heartbeat)
            try:
                images = await generate(exchange, slots, request, tracker)
            except BackendError as exc:
                failures.append(exc)
            except Exception as exc:  # a bug must still reach the user as typed
                failures.append(self._failures.unexpected(exc))
            finally:
                group.cancel_scope.cancel()
        if failures:
            raise failures[0]
        return images

    def _check_image_input(self, request: GenerationRequest) -> None:
        """Refuse image input this model was not configured to take.

        The service checks capabilities first; this guards third-party callers,
        as a predictor would silently ignore an unknown field and answer a
        text-to-image result as if it were the edit.
        """
        s = self.settings
        table = f"[backends.{self.instance_name}]"
        if request.image is None:
            if request.mask is not None:
                raise ValidationError("mask: a mask needs an input image.")
            return
        if not s.image_input:
            raise ValidationError(
                f"image: backend '{self.instance_name}' takes no input image; set "
                f"image_input = true in {table} if model '{s.model}' reads one."
            )
        if request.mask is not None and not s.mask:
            raise ValidationError(
                f"mask: backend '{self.instance_name}' takes no inpainting mask; "
                f"set mask = true in {table} if model '{s.model}' reads one."
            )
        strength = request.strength
        if strength is not None and not 0.0 <= strength <= 1.0:
            raise ValidationError(
                f"strength: must be between 0 and 1 (0 keeps the input image, 1 "
                f"ignores it), got {strength!r}."
            )

    def _started(self) -> tuple[Exchange, anyio.Semaphore]:
        if self._exchange is None or self._slots is None:
            raise BackendUnavailableError(
                f"KServe backend '{self.instance_name}' is not started."
            )
        return self._exchange, self._slots

    async def _generate_each(
        self,
        exchange: Exchange,
        slots: anyio.Semaphore,
        request: GenerationRequest,
        tracker: ProgressTracker,
    ) -> list[GeneratedImage]:
        results: list[GeneratedImage | None] = [None] * request.num_images
        failures: list[BackendError] = []

        async def one(index: int) -> None:
            try:
                async with slots:
                    payload = await self._payload(request, [index])
                    parsed = await self._call(exchange, payload, tracker)
                results[index] = self._image(request, index, parsed[0])
                await tracker.image_done()
            except BackendError as exc:
                failures.append(exc)
                group.cancel_scope.cancel()
            except Exception as exc:  # a bug must still reach the user as typed
                failures.append(self._failures.unexpected(exc))
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for index in range(request.num_images):
                group.start_soon(one, index)
        if failures:
            raise failures[0]
        return [image for image in results if image is not None]

    async def _generate_batch(
        self,
        exchange: Exchange,
        slots: anyio.Semaphore,
        request: GenerationRequest,
        tracker: ProgressTracker,
    ) -> list[GeneratedImage]:
        indexes = list(range(request.num_images))
        async with slots:
            payload = await self._payload(request, indexes)
            parsed = await self._call(exchange, payload, tracker)
        if len(parsed) < request.num_images:
            self._failures.fail(
                BadBackendResponseError,
                f"asked for {request.num_images} instances in one request but got "
                f"{len(parsed)} image(s); the predictor probably reads only "
                "instances[0]: set batch_instances = false.",
            )
        images = [self._image(request, i, parsed[i]) for i in indexes]
        for _ in indexes:
            await tracker.image_done()
        return images

    async def _payload(
        self, request: GenerationRequest, indexes: list[int]
    ) -> dict[str, object]:
        """Build the body of images ``indexes`` (with an input image: in a thread)."""
        build = functools.partial(build_payload, self.settings, request, indexes)
        if request.image is None:
            return build()
        return await anyio.to_thread.run_sync(build)

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

    async def _call(
        self, exchange: Exchange, payload: dict[str, object], tracker: ProgressTracker
    ) -> list[ParsedImage]:
        """Post ``payload`` and parse the images out of the answer."""
        reply = await exchange.post(payload, tracker)
        parse = _parser(self.settings, reply, self._failures.where())
        # Decoding and verifying a large image takes tens of milliseconds.
        return await anyio.to_thread.run_sync(parse)


def _parser(
    settings: KServeSettings, reply: Reply, where: str
) -> Callable[[], list[ParsedImage]]:
    """Return the call that parses ``reply`` by the configured protocol."""
    if settings.protocol == "v1":
        return functools.partial(
            parse_v1_response,
            reply.body,
            content_type=reply.headers.get("content-type"),
            where=where,
            max_pixels=settings.max_image_pixels,
        )
    return functools.partial(
        parse_v2_response,
        reply.body,
        headers=reply.headers,
        output_name=settings.output_name,
        where=where,
        max_pixels=settings.max_image_pixels,
    )
