"""How the ``kserve`` backend words failures: typed errors, the server's text, hints.

Every message names the instance and its URL and never holds the token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import structlog

from mcp_imagegen import (
    BackendError,
    BackendNotReadyError,
    BackendRejectedError,
    BackendUnavailableError,
    BadBackendResponseError,
    redact_url_text,
)
from mcp_imagegen_kserve.settings import KServeSettings

if TYPE_CHECKING:
    import httpx

#: Statuses worth another attempt: gateways and cold starts (model not ready).
RETRYABLE_STATUSES = frozenset({502, 503, 504})

# One logger name for the whole backend, as before it was split into modules.
log = structlog.get_logger("mcp_imagegen_kserve.backend")

_ERROR_TEXT_LIMIT = 300
_TAG = re.compile(r"<[^>]+>")

Failure = tuple[type[BackendError], str]
"""An error type and its message, raised now or after the last retry."""


class Failures:
    """Raises the backend's typed errors, named after the instance, token redacted.

    Args:
        settings: The backend's settings.
        instance_name: The ``[backends.<name>]`` table's name.
        infer_url: The inference endpoint, named in every message.
    """

    def __init__(
        self, settings: KServeSettings, instance_name: str, infer_url: str
    ) -> None:
        self.settings = settings
        self.instance_name = instance_name
        self.infer_url = infer_url

    def where(self) -> str:
        """Return the prefix of every message: which backend, at which URL."""
        return f"KServe backend '{self.instance_name}' ({self.infer_url})"

    def redact(self, text: str) -> str:
        """Return ``text`` with the token masked."""
        token = self.settings.token
        if token is not None and token.get_secret_value():
            text = text.replace(token.get_secret_value(), "**********")
        return text

    def fail(self, cls: type[BackendError], message: str) -> NoReturn:
        """Log and raise ``cls`` with ``message``, prefixed and redacted."""
        error = cls(self.redact(f"{self.where()}: {message}"))
        log.warning(
            "kserve_request_failed",
            backend=self.instance_name,
            error_type=cls.__name__,
            error=str(error),
        )
        raise error

    def unexpected(self, exc: Exception) -> BackendError:
        """Return a :class:`BackendError` for a bug, logged with its traceback."""
        log.exception("kserve_unexpected_error", backend=self.instance_name)
        return BackendError(
            self.redact(f"{self.where()}: unexpected error {type(exc).__name__}: {exc}")
        )

    def refused(self) -> NoReturn:
        """Raise for a first connection that was refused (not retried)."""
        # A refusal before the server ever answered is a wrong address, not a
        # cold start (Knative's activator holds connections while scaling from
        # zero): retrying would only make a one-shot CLI wait for a minute.
        key = f"backends.{self.instance_name}.url"
        self.fail(
            BackendUnavailableError,
            f"nothing accepts connections at {redact_url_text(self.settings.url)}"
            f" (connection refused); check {key}. Not retried: a refused first "
            "connection means a wrong host or port, not a model that is loading.",
        )

    def too_large(self, cap: int) -> NoReturn:
        """Raise for an answer over ``max_response_bytes``."""
        self.fail(
            BadBackendResponseError,
            f"the answer is larger than max_response_bytes ({cap} bytes).",
        )

    def status_failure(
        self, status: int, headers: Mapping[str, str], body: bytes
    ) -> Failure:
        """Return the error type and message for a non-2xx answer."""
        import httpx  # loaded with the connection pool, not with the plugin

        model = self.settings.model
        text = error_text(body, headers.get("content-type"))
        said = f": {text}" if text else ""
        label = f"{status} {httpx.codes.get_reason_phrase(status)}".strip()
        hint = self.status_hint(status)
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
            location = httpx.URL(headers.get("location", "")).copy_with(
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

    def status_hint(self, status: int) -> str:
        """Return what to check for ``status`` (token, model, schema), or ``""``."""
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


def describe_http_error(exc: httpx.HTTPError) -> str:
    """Return ``"Type: text"`` for a transport error, at most 200 characters."""
    # httpx's ReadError often has no text of its own; the OS error says more.
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or (str(cause) if cause is not None else "") or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]


def error_text(body: bytes, content_type: str | None) -> str:
    """Return the server's error text, compact and truncated, or ``""``."""
    if not body:
        return ""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(body)} bytes of binary data"
    message = _json_message(text, content_type)
    if message is None:
        message = _TAG.sub(" ", text) if "<" in text else text
    compact = " ".join(str(message).split()).rstrip(".")
    if len(compact) > _ERROR_TEXT_LIMIT:
        compact = compact[: _ERROR_TEXT_LIMIT - 1] + "…"
    return compact


def _json_message(text: str, content_type: str | None) -> Any:
    """Return the ``error``/``detail``/``message`` of a JSON error body, or ``None``."""
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
    return message
