"""Masking secrets: setting values, log fields and credentials inside URLs.

A module of its own, with nothing but :mod:`re`, so that the package face can
re-export :func:`redact_url_text` to plugins without importing the configuration
(pydantic-settings) with every plugin import.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "authorization",
    "access_key",
    "api_key",
    "credential",
    "signature",
)
_SECRET_KEY = re.compile("|".join(map(re.escape, _SECRET_WORDS)))
#: Query parameters whose value is a secret though the name says little
#: (presigned S3/GCS URLs, SAS tokens, API keys).
_SECRET_QUERY_NAMES = frozenset(
    {"sig", "key", "apikey", "auth", "pass", "passwd", "pwd", "code", "session"}
)
REDACTED = "**********"

# ``scheme://userinfo@host``. With a ``:`` (user:password) the password may hold
# anything but a line break (people paste ``'``, ``"``, spaces, ``/`` and ``@``
# unencoded), so it runs to the LAST ``@`` on the line that is followed by a
# host; this may hide more than the password, never less. Without a ``:`` the
# userinfo (a user name or a bare token) holds no space and no ``/``.
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?:[^\s/?#@:]*:(?:(?!://)[^\n])*|[^\s/?#@]+)"
    r"@(?=[\w\[])"
)
# ``?name=value`` / ``&name=value`` / ``;name=value`` inside a URL.
_URL_QUERY_VALUE = re.compile(r"(?P<lead>[?&;](?P<name>[^=&#\s?;]+)=)[^&#\s;]*")


def redact_url_text(text: str) -> str:
    """Mask credentials in every URL found in ``text``.

    Userinfo (``https://user:password@host``) and the values of secret-looking
    query parameters (``?token=``, ``X-Amz-Signature=``, ``sig=``, ...) become
    ``**********``. The one rule for config errors, the ``config`` output, logs
    and plugin messages that echo URLs.

    Args:
        text: Any text: a URL, an error message, a log event.

    Returns:
        ``text`` with those parts masked; unchanged when it holds none.
    """
    if "://" not in text and "=" not in text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    return _URL_QUERY_VALUE.sub(_mask_query_value, text)


def _mask_query_value(match: re.Match[str]) -> str:
    name = match["name"].lower()
    if is_secret_key(name) or name in _SECRET_QUERY_NAMES:
        return match["lead"] + REDACTED
    return match[0]


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True when a setting or log field named ``key`` holds a secret."""
    # Cached: every log line asks this for each of its keys, and the same few
    # dozen keys come back all the time (it was ~60 % of an ``image_generated``
    # line). Bounded, so arbitrary keys cannot grow it.
    return _SECRET_KEY.search(key.lower()) is not None


def redact(data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` with secrets masked.

    Masks the value of every secret-looking key and the credentials in every URL
    held by a string (:func:`redact_url_text`), at any depth.
    """
    redacted: dict[str, Any] = redact_value(data)
    return redacted


def redact_value(value: Any, key: str = "") -> Any:
    """Return ``value`` (found under ``key``) with secrets masked, at any depth."""
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, key) for v in value]
    if value and is_secret_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_url_text(value)
    return value
