"""Authentication and per-tool scopes for the streamable HTTP transport.

``[server.auth]`` picks a mode: ``none``, ``bearer`` (static tokens compared by
their sha256 digests in constant time) or ``jwt`` (access tokens from an OAuth
authorization server, verified with PyJWT against its JWKS). Both verifiers
implement the SDK's :class:`~mcp.server.auth.provider.TokenVerifier`, so the
SDK's bearer middleware answers a request without a valid token with 401 and a
``WWW-Authenticate`` header pointing at the RFC 9728 protected-resource
metadata. Which scope each tool and resource needs is decided here, by
:class:`ScopeMiddleware` on the MCP server's request chain.

Tokens are never logged: verifiers keep only a short sha256 fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
import jwt
import structlog
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.auth.settings import AuthSettings
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_imagegen._config import IMAGE_SCOPES, ServerAuthSettings, Settings
from mcp_imagegen.errors import ConfigurationError

log = structlog.get_logger("mcp_imagegen._http.auth")

SCOPE_GENERATE, SCOPE_READ, SCOPE_DELETE = IMAGE_SCOPES

#: The scope each MCP tool needs. A tool not listed here (one a plugin adds)
#: needs ``images:generate``.
TOOL_SCOPES: dict[str, str] = {
    "generate_image": SCOPE_GENERATE,
    "transform_image": SCOPE_GENERATE,
    "edit_image": SCOPE_GENERATE,
    "ingest_image": SCOPE_GENERATE,
    # Reads the result of a generation the same principal started.
    "get_generation": SCOPE_GENERATE,
    "list_images": SCOPE_READ,
    "get_image": SCOPE_READ,
    "list_backends": SCOPE_READ,
    "delete_image": SCOPE_DELETE,
}
#: The scope other MCP requests need; methods not listed (initialize, ping,
#: tools/list, ...) need none beyond a valid token.
METHOD_SCOPES: dict[str, str] = {
    "resources/list": SCOPE_READ,
    "resources/templates/list": SCOPE_READ,
    "resources/read": SCOPE_READ,
    # Prompts and completions read the server's content too: styles, and
    # completion of image_id arguments lists stored image ids.
    "prompts/list": SCOPE_READ,
    "prompts/get": SCOPE_READ,
    "completion/complete": SCOPE_READ,
}
DEFAULT_TOOL_SCOPE = SCOPE_GENERATE


class InsufficientScopeError(MCPError):
    """The caller's token lacks the scope a tool or resource needs."""

    def __init__(self, scope: str, what: str) -> None:
        super().__init__(
            INVALID_REQUEST,
            f"insufficient_scope: {what} needs the scope '{scope}', which the "
            "access token does not carry; ask for a token with that scope.",
            data={"error": "insufficient_scope", "scope": scope},
        )
        self.scope = scope


def required_scope(method: str, tool_name: str | None = None) -> str | None:
    """Return the scope an MCP request needs, or ``None`` when it needs none.

    Args:
        method: The JSON-RPC method (``tools/call``, ``resources/read``, ...).
        tool_name: The tool's name, for ``tools/call``.
    """
    if method == "tools/call":
        return TOOL_SCOPES.get(tool_name or "", DEFAULT_TOOL_SCOPE)
    return METHOD_SCOPES.get(method)


def require_scope(
    tool_name: str, token: AccessToken | None = None, *, method: str = "tools/call"
) -> None:
    """Refuse the call unless the current access token carries its scope.

    Without authentication (stdio, or HTTP with ``mode = "none"``) there is no
    token and every call is allowed.

    Args:
        tool_name: The tool called (ignored for other methods).
        token: The caller's token; the SDK's auth context when not given.
        method: The JSON-RPC method.

    Raises:
        InsufficientScopeError: naming the scope that is missing.
    """
    scope = required_scope(method, tool_name)
    token = token if token is not None else get_access_token()
    if scope is None or token is None or scope in token.scopes:
        return
    what = f"the tool '{tool_name}'" if method == "tools/call" else method
    log.warning("auth_insufficient_scope", method=method, tool=tool_name, scope=scope)
    raise InsufficientScopeError(scope, what)


def _request_token(ctx: ServerRequestContext[Any, Any]) -> AccessToken | None:
    # The HTTP request this message came with is the reliable source: in a
    # stateful session the message runs in the session's task, whose context
    # variables were copied from the session's first request.
    scope = getattr(ctx.request, "scope", None)
    if isinstance(scope, dict):
        user = scope.get("user")
        if isinstance(user, AuthenticatedUser):
            return user.access_token
    return get_access_token()


class ScopeMiddleware:
    """MCP server middleware enforcing :data:`TOOL_SCOPES` and :data:`METHOD_SCOPES`.

    Install it on a server with authentication:
    ``MCPServer(..., middleware=[ScopeMiddleware()])``.
    """

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Check the scope of one inbound request, then pass it on."""
        if ctx.request_id is not None:  # notifications carry no authority
            name = ctx.params.get("name") if ctx.params else None
            require_scope(
                name if isinstance(name, str) else "",
                _request_token(ctx),
                method=ctx.method,
            )
        return await call_next(ctx)


def fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to log and to compare."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


class StaticTokenVerifier(TokenVerifier):
    """Accepts a fixed set of bearer tokens, known by their sha256 digests."""

    def __init__(self, digests: Sequence[bytes], scopes: Sequence[str]) -> None:
        """Create the verifier.

        Args:
            digests: sha256 digests (32 bytes each) of the accepted tokens.
            scopes: The scopes every accepted token carries.
        """
        self._digests = tuple(digests)
        self._scopes = list(scopes)

    async def verify_token(self, token: str) -> AccessToken | None:
        """Return the token's access info if its digest is an accepted one."""
        digest = hashlib.sha256(token.encode()).digest()
        # Compare with every digest, without stopping early, so the time taken
        # says nothing about which one (if any) matched.
        matched = False
        for accepted in self._digests:
            matched |= hmac.compare_digest(digest, accepted)
        if not matched:
            log.warning("auth_rejected", mode="bearer", reason="unknown token")
            return None
        name = fingerprint(token)
        return AccessToken(token=name, client_id=f"bearer:{name}", scopes=self._scopes)


def read_tokens_file(path: Path) -> list[bytes]:
    """Read sha256 hex digests, one per line; ``#`` starts a comment.

    Raises:
        ConfigurationError: naming the file and line of anything else.
    """
    key = "server.auth.tokens_file"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigurationError(f"{key}: cannot read {path}: {reason}.") from None
    digests = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip().lower()
        if not text:
            continue
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            # The line is not echoed: it may be a token pasted by mistake.
            raise ConfigurationError(
                f"{key}: {path} line {number}: expected a sha256 hex digest "
                "(64 hex digits, e.g. from `printf %s TOKEN | sha256sum`)."
            )
        digests.append(bytes.fromhex(text))
    return digests


class JWTVerifier(TokenVerifier):
    """Verifies JWT access tokens against an authorization server's JWKS."""

    def __init__(self, auth: ServerAuthSettings, audience: str) -> None:
        """Create the verifier.

        Args:
            auth: The ``[server.auth]`` settings (``issuer``, ``jwks_url``, ...).
            audience: The ``aud`` claim a token must carry.
        """
        assert auth.issuer is not None and auth.jwks_url is not None
        self._issuer = auth.issuer
        self._audience = audience
        self._algorithms = list(auth.algorithms)
        self._leeway = auth.leeway.total_seconds()
        # Keys are cached; a token with an unknown key id refetches the key set
        # once (key rotation), at most once per cooldown.
        self._jwks = jwt.PyJWKClient(
            auth.jwks_url,
            cache_keys=True,
            timeout=10,
            cooldown_duration=auth.jwks_refetch_cooldown.total_seconds(),
        )

    def _decode(self, token: str) -> dict[str, Any]:
        key = self._jwks.get_signing_key_from_jwt(token)
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=self._algorithms,
            audience=self._audience,
            issuer=self._issuer,
            leeway=self._leeway,
            options={"require": ["exp", "iss", "aud"]},
        )
        return claims

    async def verify_token(self, token: str) -> AccessToken | None:
        """Return the token's access info, or ``None`` for any invalid token."""
        try:
            # PyJWKClient fetches with blocking urllib: keep it off the loop.
            claims = await anyio.to_thread.run_sync(self._decode, token)
        except jwt.PyJWKClientConnectionError as exc:
            log.error("auth_jwks_unavailable", error=str(exc))
            return None
        except jwt.PyJWTError as exc:
            # PyJWT's messages name the failed check, never the token itself.
            log.warning("auth_rejected", mode="jwt", reason=str(exc))
            return None
        scopes = claims.get("scope", claims.get("scp", []))
        if isinstance(scopes, str):
            scopes = scopes.split()
        subject = claims.get("sub")
        client_id = claims.get("client_id") or claims.get("azp") or subject
        return AccessToken(
            token=fingerprint(token),
            client_id=str(client_id or fingerprint(token)),
            scopes=[str(s) for s in scopes],
            expires_at=int(claims["exp"]),
            resource=self._audience,
            subject=str(subject) if subject is not None else None,
            claims={"iss": claims["iss"]},
        )


def auth_enabled(settings: Settings) -> bool:
    """True when HTTP clients must authenticate (``server.auth.mode`` is not none)."""
    return settings.server.auth.mode != "none"


def default_resource_url(settings: Settings) -> str:
    """The MCP endpoint's public URL: ``[server.http]`` ``public_url`` + ``path``.

    Falls back to ``http://<host>:<port><path>``.
    """
    http = settings.server.http
    if http.public_url:
        return http.public_url + http.path  # validated: no trailing /
    host = f"[{http.host}]" if ":" in http.host else http.host
    return f"http://{host}:{http.port}{http.path}"


def auth_for(settings: Settings) -> tuple[TokenVerifier | None, AuthSettings | None]:
    """Build the SDK's token verifier and auth settings for ``[server.auth]``.

    Pass both to ``MCPServer(token_verifier=..., auth=...)``, add
    :class:`ScopeMiddleware` to its middleware, and call
    :func:`install_resource_metadata` on the app it builds.

    The MCP endpoint's URL (:func:`default_resource_url`) is the resource
    and, unless ``audience`` is set, the token audience.

    Args:
        settings: The whole configuration.

    Returns:
        ``(None, None)`` for ``mode = "none"``.

    Raises:
        ConfigurationError: for an unreadable or malformed ``tokens_file``.
    """
    auth = settings.server.auth
    if auth.mode == "none":
        return None, None
    resource = default_resource_url(settings)
    verifier: TokenVerifier
    if auth.mode == "bearer":
        digests = [
            hashlib.sha256(t.get_secret_value().encode()).digest() for t in auth.tokens
        ]
        if auth.tokens_file is not None:
            digests += read_tokens_file(auth.tokens_file)
        if not digests:
            # Serving would refuse everyone: say so at start instead.
            raise ConfigurationError(
                f"server.auth.tokens_file: {auth.tokens_file} lists no token digest "
                "and MCP_IMAGEGEN_SERVER__AUTH__TOKENS is empty; add a sha256 digest "
                "or set the variable."
            )
        verifier = StaticTokenVerifier(digests, auth.bearer_scopes)
        # No authorization server issues static tokens; the SDK needs an issuer
        # URL all the same. install_resource_metadata leaves it out of the
        # metadata it serves.
        issuer = _origin(resource)
    else:
        verifier = JWTVerifier(auth, auth.audience or resource)
        assert auth.issuer is not None
        issuer = auth.issuer
    sdk_auth = AuthSettings(
        issuer_url=issuer,  # type: ignore[arg-type]  # pydantic parses the URL
        resource_server_url=resource,  # type: ignore[arg-type]
        required_scopes=list(auth.required_scopes) or None,
        # The JWT verifier checks the audience itself; static tokens have none.
        validate_token_resource=False,
    )
    return verifier, sdk_auth


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def resource_metadata(settings: Settings, resource_url: str) -> dict[str, Any]:
    """The RFC 9728 protected-resource metadata document for this server."""
    auth = settings.server.auth
    scopes = list(dict.fromkeys([*IMAGE_SCOPES, *auth.required_scopes]))
    document: dict[str, Any] = {
        "resource": resource_url,
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": settings.server.name,
    }
    if auth.mode == "jwt":
        document["authorization_servers"] = [auth.issuer]
    return document


def install_resource_metadata(app: Starlette, settings: Settings) -> None:
    """Serve this server's own protected-resource metadata from ``app``.

    The SDK's document lists only ``required_scopes`` as supported and names
    the issuer URL as the authorization server even for static bearer tokens,
    which no authorization server issues; this one lists every image scope and
    names an authorization server only in ``jwt`` mode. The route keeps the
    SDK's path, which its 401 responses point at.
    """
    if not auth_enabled(settings):
        return
    resource = default_resource_url(settings)
    path = urlsplit(str(build_resource_metadata_url(resource))).path  # type: ignore[arg-type]
    document = resource_metadata(settings, resource)

    async def metadata(request: Request) -> Response:
        return JSONResponse(
            document,
            headers={
                "Cache-Control": "public, max-age=3600",
                "Access-Control-Allow-Origin": "*",
            },
        )

    routes = app.router.routes
    routes[:] = [r for r in routes if getattr(r, "path", None) != path]
    routes.insert(0, Route(path, metadata, methods=["GET"]))
