"""HTTP of the ``kserve`` backend: the connection pool and one request with retries.

:class:`Exchange` sends one inference request and returns the answer, retrying
what :mod:`mcp_imagegen_kserve.retries` calls transient within ``deadline`` and
``max_retries``, and raising the typed errors of :mod:`mcp_imagegen_kserve.failures`.
"""

from __future__ import annotations

import socket
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

import anyio
import httpx
import structlog

from mcp_imagegen import (
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigurationError,
    __version__,
)
from mcp_imagegen_kserve.failures import (
    RETRYABLE_STATUSES,
    Failure,
    Failures,
    describe_http_error,
)
from mcp_imagegen_kserve.payloads import encode_payload
from mcp_imagegen_kserve.progress import ProgressTracker
from mcp_imagegen_kserve.retries import (
    STALE_CONNECTION_ERRORS,
    ConnectionTrace,
    backoff_delay,
    caused_by,
    connection_refused,
    retry_after,
)
from mcp_imagegen_kserve.settings import KServeSettings

# One logger name for the whole backend, as before it was split into modules.
log = structlog.get_logger("mcp_imagegen_kserve.backend")


@dataclass(frozen=True)
class Reply:
    """A whole answer of the inference endpoint."""

    status: int
    headers: httpx.Headers
    body: bytes


@dataclass(frozen=True)
class _Retry:
    """A failed attempt worth another: why, and how soon."""

    failure: Failure
    at_once: bool = False  # without backoff: nothing is wrong with the server
    retry_after: float | None = None


def open_client(
    settings: KServeSettings,
    instance_name: str,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """Return the backend's connection pool (no request is sent).

    Raises:
        ConfigurationError: ``ca_bundle`` cannot be loaded.
    """
    headers = {"User-Agent": f"mcp-imagegen/{__version__}"}
    if settings.token is not None:
        headers["Authorization"] = f"Bearer {settings.token.get_secret_value()}"
    if settings.host_header:
        headers["Host"] = settings.host_header
    pool = settings.max_concurrency + 2  # plus health checks
    return httpx.AsyncClient(
        headers=headers,
        timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
        limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        verify=_tls_verification(settings, instance_name),
        transport=transport,
        follow_redirects=False,
    )


def _tls_verification(
    settings: KServeSettings, instance_name: str
) -> ssl.SSLContext | bool:
    if settings.ca_bundle is not None:
        try:
            return ssl.create_default_context(cafile=str(settings.ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"backends.{instance_name}.ca_bundle: cannot load "
                f"{settings.ca_bundle} ({exc})."
            ) from None
    return settings.verify_tls


class Exchange:
    """Posts inference requests to one endpoint, retrying transient failures.

    Args:
        client: The backend's connection pool.
        infer_url: The inference endpoint.
        settings: The backend's settings (timeouts, retries, caps).
        failures: Raises the backend's typed errors.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        infer_url: str,
        settings: KServeSettings,
        failures: Failures,
    ) -> None:
        self.client = client
        self.infer_url = infer_url
        self.settings = settings
        self.failures = failures

    async def post(self, payload: dict[str, Any], tracker: ProgressTracker) -> Reply:
        """Send ``payload`` until a 2xx answer, a final failure or the deadline.

        Raises:
            BackendError: a subclass saying what failed; see ``KServeBackend.generate``.
        """
        # In a worker thread: a body with an input image is megabytes of JSON.
        content = await anyio.to_thread.run_sync(encode_payload, payload)
        request_id = str(payload.get("id") or uuid.uuid4().hex)
        begun = time.monotonic()
        deadline = begun + self.settings.deadline
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(content, request_id, attempt, begun, deadline)
            if isinstance(outcome, Reply):
                return outcome
            await self._wait(outcome, attempt, begun, deadline, tracker)

    async def _attempt(
        self,
        content: bytes,
        request_id: str,
        attempt: int,
        begun: float,
        deadline: float,
    ) -> Reply | _Retry:
        s = self.settings
        remaining = deadline - time.monotonic()
        time_limits = httpx.Timeout(
            min(s.timeout, remaining),
            connect=min(s.connect_timeout, remaining),
            pool=None,
        )
        trace = ConnectionTrace()
        try:
            reply = await self._send(content, time_limits, request_id, trace)
        except httpx.ConnectError as exc:
            return _Retry(self._connect_failure(exc, attempt))
        except httpx.ConnectTimeout:
            return _Retry(
                (
                    BackendUnavailableError,
                    f"cannot connect (no connection within "
                    f"{min(s.connect_timeout, remaining):g} s).",
                )
            )
        except httpx.TimeoutException:
            self._timed_out(remaining, attempt)
        except httpx.HTTPError as exc:
            broke = (
                "the connection broke while waiting for the answer "
                f"({describe_http_error(exc)})."
            )
            if not (trace.stale and isinstance(exc, STALE_CONNECTION_ERRORS)):
                self.failures.fail(BackendUnavailableError, broke)
            # A pooled keep-alive connection the server had already closed
            # (KServe drops it after a 500): the request never reached the
            # model, so sending it again on a fresh connection is safe.
            return _Retry((BackendUnavailableError, broke), at_once=True)
        self._log_reply(reply, attempt, begun)
        if 200 <= reply.status < 300:
            return reply
        failure = self.failures.status_failure(reply.status, reply.headers, reply.body)
        if reply.status not in RETRYABLE_STATUSES:
            self.failures.fail(*failure)
        return _Retry(failure, retry_after=retry_after(reply.headers))

    def _connect_failure(self, exc: httpx.ConnectError, attempt: int) -> Failure:
        """Raise for a connection that cannot work; else return the retry's reason."""
        if caused_by(exc, socket.gaierror):
            self.failures.fail(
                BackendUnavailableError,
                f"cannot resolve the host of {self.settings.url} "
                f"({describe_http_error(exc)}); check url.",
            )
        if caused_by(exc, ssl.SSLError):
            self.failures.fail(
                BackendUnavailableError,
                f"TLS handshake failed ({describe_http_error(exc)}); check "
                "the URL's scheme, ca_bundle or verify_tls.",
            )
        if attempt == 1 and connection_refused(exc):
            self.failures.refused()
        return (
            BackendUnavailableError,
            f"cannot connect ({describe_http_error(exc)}).",
        )

    def _timed_out(self, remaining: float, attempt: int) -> NoReturn:
        s = self.settings
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
        self.failures.fail(BackendTimeoutError, message)

    def _log_reply(self, reply: Reply, attempt: int, begun: float) -> None:
        log.info(
            "kserve_response",
            backend=self.failures.instance_name,
            model=self.settings.model,
            status=reply.status,
            attempt=attempt,
            bytes=len(reply.body),
            duration_ms=round((time.monotonic() - begun) * 1000, 1),
        )

    async def _wait(
        self,
        retry: _Retry,
        attempt: int,
        begun: float,
        deadline: float,
        tracker: ProgressTracker,
    ) -> None:
        """Raise if no attempt is left before the limits; else wait for the next."""
        s = self.settings
        cls, reason = retry.failure
        elapsed = time.monotonic() - begun
        if attempt > s.max_retries:
            self.failures.fail(
                cls,
                f"{reason} Gave up after {attempt} attempt(s) in "
                f"{elapsed:.1f} s (max_retries = {s.max_retries}).",
            )
        wait = 0.0 if retry.at_once else backoff_delay(attempt, s, retry.retry_after)
        if time.monotonic() + wait >= deadline:
            self.failures.fail(
                cls,
                f"{reason} Gave up after {attempt} attempt(s) in "
                f"{elapsed:.1f} s: the deadline of {s.deadline:g} s would pass.",
            )
        log.warning(
            "kserve_retry",
            backend=self.failures.instance_name,
            model=s.model,
            attempt=attempt,
            wait_s=round(wait, 2),
            reason=reason,
        )
        await tracker.note(
            f"connection to model '{s.model}' was stale; retry {attempt}/"
            f"{s.max_retries} at once"
            if retry.at_once
            else f"model '{s.model}' not available yet; retry {attempt}/"
            f"{s.max_retries} in {wait:.1f} s"
        )
        await anyio.sleep(wait)

    async def _send(
        self,
        content: bytes,
        time_limits: httpx.Timeout,
        request_id: str,
        trace: ConnectionTrace,
    ) -> Reply:
        cap = self.settings.max_response_bytes
        request = self.client.build_request(
            "POST",
            self.infer_url,
            content=content,
            headers={"Content-Type": "application/json", "X-Request-ID": request_id},
            timeout=time_limits,
            extensions={"trace": trace},
        )
        response = await self.client.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                self.failures.too_large(cap)
            chunks = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    self.failures.too_large(cap)
                chunks.append(chunk)
        finally:
            await response.aclose()
        return Reply(response.status_code, response.headers, b"".join(chunks))
