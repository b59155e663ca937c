"""``GET``/``HEAD /images/{id}``: stored images behind signed capability URLs.

A link is ``<public_url>/images/<id>?exp=<unix time>&sig=<signature>``, the
signature being HMAC-SHA256 of ``<id>:<exp>`` under ``server.http.url_secret``,
base64url without padding. Whoever holds a link may open it until ``exp``, in a
browser, without the MCP endpoint's bearer token: the route sits outside the
endpoint's authentication. A wrong, missing or expired signature is a 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_imagegen._config import HttpSettings
from mcp_imagegen._ids import validate_image_id
from mcp_imagegen._service import ImageService
from mcp_imagegen.errors import ImageNotFoundError, InvalidImageIdError, StorageError
from mcp_imagegen.models import ImageRecord

log = structlog.get_logger("mcp_imagegen._http")

#: The secret used when ``server.http.url_secret`` is unset: one per process, so
#: the links the tools hand out and the route that checks them agree, while a
#: link outlives neither the process nor reaches another replica.
_PROCESS_SECRET = secrets.token_bytes(32)

#: Where the image links live: ``<public_url>/images/<id>``.
IMAGES_PREFIX = "/images/"

#: Longest ``exp`` accepted (digits): far beyond any real time, short enough
#: that a huge number never reaches ``int``.
_MAX_EXP_DIGITS = 12


class SignatureRefused(Exception):
    """A link's signature is missing, wrong or expired; the message says which."""


class ImageUrls:
    """Signs and checks the capability URLs of ``/images/{id}``.

    Args:
        secret: The HMAC key.
        ttl: Seconds a new link stays valid.
        public_url: The externally visible base URL links start with, if any.
    """

    def __init__(self, secret: bytes, ttl: float, public_url: str | None) -> None:
        self._secret = secret
        self.ttl = ttl
        self.public_url = public_url

    @classmethod
    def from_settings(cls, http: HttpSettings) -> ImageUrls:
        """The signer for ``[server.http]``; the process's own secret when unset."""
        secret = (
            http.url_secret.get_secret_value().encode()
            if http.url_secret is not None
            else _PROCESS_SECRET
        )
        return cls(secret, http.url_ttl.total_seconds(), http.public_url)

    def signature(self, image_id: str, exp: int) -> str:
        """The signature of a link to ``image_id`` valid until ``exp`` (unix time)."""
        digest = hmac.new(
            self._secret, f"{image_id}:{exp}".encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def link(self, image_id: str) -> str:
        """A link to ``image_id`` under ``public_url``, valid for ``ttl`` from now.

        Raises:
            ValueError: when no ``public_url`` is configured.
        """
        if self.public_url is None:
            raise ValueError("server.http.public_url is not set")
        exp = int(time.time() + self.ttl)
        sig = self.signature(image_id, exp)
        return f"{self.public_url}{IMAGES_PREFIX}{image_id}?exp={exp}&sig={sig}"

    def check(self, image_id: str, exp: str | None, sig: str | None, now: float) -> int:
        """Check a link's query; return the seconds it stays valid.

        Raises:
            SignatureRefused: when ``exp`` or ``sig`` is missing or malformed,
                the signature does not match, or the link has expired.
        """
        if not sig or not exp:
            raise SignatureRefused(
                "missing signature: image links need their exp and sig query "
                "parameters; ask the server for a fresh link (get_image)"
            )
        if not (exp.isascii() and exp.isdigit()) or len(exp) > _MAX_EXP_DIGITS:
            raise SignatureRefused("invalid signature: exp is not a unix time")
        expected = self.signature(image_id, int(exp)).encode("ascii")
        # Constant time: the comparison must not tell how much of a guess is right.
        if not hmac.compare_digest(expected, sig.encode("utf-8", "surrogateescape")):
            raise SignatureRefused(
                "invalid signature: the link was altered or signed by another "
                "server; ask the server for a fresh link (get_image)"
            )
        remaining = int(exp) - int(now)
        if remaining <= 0:
            raise SignatureRefused(
                "the link has expired; ask the server for a fresh link (get_image)"
            )
        return remaining


def image_route(service: ImageService, urls: ImageUrls) -> Route:
    """The ``GET``/``HEAD /images/{id}`` route over ``service``'s storage."""

    async def image(request: Request) -> Response:
        raw = request.path_params["image_id"]
        try:
            image_id = validate_image_id(raw)
        except InvalidImageIdError as exc:
            # The path converter takes slashes too, so ``..`` never reaches a
            # storage: whatever is not an id ends here.
            return _error(404, str(exc))
        query = request.query_params
        try:
            remaining = urls.check(
                image_id, query.get("exp"), query.get("sig"), time.time()
            )
        except SignatureRefused as exc:
            log.info("image_link_refused", image_id=image_id, reason=str(exc))
            return _error(403, str(exc))
        head = request.method == "HEAD"
        conditional = "if-none-match" in request.headers
        try:
            data: bytes | None = None
            if head or conditional:
                # The record alone answers these: no need to read the image.
                record = await service.get_record(image_id)
            else:
                stored = await service.load(image_id)
                record, data = stored.record, stored.data
            headers = _headers(record, remaining)
            if conditional and _matches(request.headers["if-none-match"], record):
                return Response(status_code=304, headers=headers)
            if data is None and not head:
                data = (await service.load(image_id)).data
        except ImageNotFoundError:
            return _error(404, f"No image with id '{image_id}' is stored.")
        except StorageError as exc:
            log.warning("image_route_storage_error", image_id=image_id, error=str(exc))
            return _error(
                503,
                "the image storage could not serve this image; try again later "
                "(the server log has details)",
                retry_after=True,
            )
        if head:
            headers["Content-Length"] = str(record.byte_size)
            return Response(status_code=200, headers=headers)
        assert data is not None
        return Response(data, headers=headers)

    return Route(IMAGES_PREFIX + "{image_id:path}", image, methods=["GET", "HEAD"])


def _headers(record: ImageRecord, remaining: int) -> dict[str, str]:
    return {
        "Content-Type": record.mime_type,
        # The id names immutable bytes, whose digest the record holds.
        "ETag": _etag(record),
        # "private": a capability URL must not land in shared caches; never
        # cached past the link's own validity.
        "Cache-Control": f"private, max-age={remaining}, immutable",
        "X-Content-Type-Options": "nosniff",
    }


def _matches(if_none_match: str, record: ImageRecord) -> bool:
    """Whether ``If-None-Match`` names the record's ETag (weak comparison)."""
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or _etag(record) in tags


def _etag(record: ImageRecord) -> str:
    return f'"{record.sha256}"'


def _error(status: int, message: str, *, retry_after: bool = False) -> JSONResponse:
    return JSONResponse(
        {"error": message},
        status_code=status,
        headers={"Retry-After": "5"} if retry_after else None,
    )
