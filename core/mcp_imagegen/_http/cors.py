"""CORS for browser clients on other origins (``server.http.cors_origins``).

A web page may call the MCP endpoint, and fetch the signed ``/images/{id}``
links of its results, from another origin only when the server's answers say
so. Without ``cors_origins`` none do, and browsers stop such pages at their
preflight. Starlette's ``CORSMiddleware`` answers for the listed origins, on
those two paths only: health, readiness and metrics are not for pages, and the
SDK answers the CORS of its protected-resource metadata itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_imagegen._http.images import IMAGES_PREFIX

#: What a page may read of an answer beyond the CORS-safelisted headers: the
#: session id (stateful mode), the auth challenge (to find the authorization
#: server) and an image's ETag.
EXPOSED_HEADERS = ("Mcp-Session-Id", "WWW-Authenticate", "ETag")
#: The MCP endpoint's methods (POST messages, GET stream, DELETE session) and
#: the image links' (GET, HEAD).
METHODS = ("GET", "HEAD", "POST", "DELETE")


class CorsMiddleware:
    """Answers CORS for ``origins`` on the MCP endpoint ``path`` and image links.

    Every request header is allowed (the MCP client sends its own, such as
    ``Mcp-Method``, and newer ones come with new protocol versions), no cookies
    (a page authenticates with a bearer token), and a listed origin may reach a
    server on a private network (Chrome's Private Network Access preflight):
    listing it is the operator's consent.

    Args:
        app: The app behind (the SDK's, with our routes and middleware).
        origins: Web origins, ``scheme://host[:port]``, or ``scheme://host:*``
            for any port (checked by the settings).
        path: The MCP endpoint's path.
    """

    def __init__(self, app: ASGIApp, *, origins: Sequence[str], path: str) -> None:
        self.app = app
        self.path = path
        exact = [origin for origin in origins if not origin.endswith(":*")]
        any_port = [
            rf"(?:{re.escape(origin.removesuffix(':*'))}:\d+)"
            for origin in origins
            if origin.endswith(":*")
        ]
        self.cors = CORSMiddleware(
            app,
            allow_origins=exact,
            allow_origin_regex="|".join(any_port) or None,
            allow_methods=METHODS,
            allow_headers=["*"],
            allow_private_network=True,
            expose_headers=EXPOSED_HEADERS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._covers(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _covers(self, path: str) -> bool:
        return path == self.path or path.startswith(IMAGES_PREFIX)
