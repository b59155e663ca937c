"""Fixtures for the HTTP authentication tests: a real uvicorn server on loopback,
an OAuth-style JWKS endpoint serving keys the tests generate, and token makers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._http.auth import install_resource_metadata
from mcp_imagegen._logs import configure_logging
from mcp_imagegen._plugins import PluginManager

ISSUER = "https://issuer.example.test"


@dataclass
class Running:
    """A server running on loopback."""

    base: str
    #: The MCP endpoint.
    url: str


@contextmanager
def run_app(app: Any, sock: socket.socket) -> Iterator[None]:
    """Run an ASGI app with uvicorn in a thread on an already bound socket."""
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        for _ in range(500):  # bounded: 10 s at most
            if server.started or not thread.is_alive():
                break
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def serve(
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
    restore_logging: None,
    capfd: pytest.CaptureFixture[str],
) -> Iterator[Callable[..., Running]]:
    """Start the image server with the given ``[server.auth]`` table over HTTP.

    Depends on ``capfd`` so that the capture outlives the server: a stateless
    request logs after its response, and a closed capture would break that.
    """
    stack: list[Any] = []

    def start(auth: Mapping[str, Any], *, stateless: bool = True) -> Running:
        sock = bound_socket()
        port = sock.getsockname()[1]
        settings = make_settings(
            {
                "server": {"auth": dict(auth), "http": {"port": port}},
                "logging": {"level": "debug"},
            }
        )
        configure_logging(settings.logging)
        base = f"http://127.0.0.1:{port}"
        url = base + "/mcp"
        # The composition root's HTTP wiring: verifier, auth settings, scopes.
        server = create_server(settings, plugin_manager, http=True)
        app = server.streamable_http_app(stateless_http=stateless)
        install_resource_metadata(app, settings)
        running = run_app(app, sock)
        running.__enter__()
        stack.append(running)
        return Running(base, url)

    yield start
    for running in reversed(stack):
        running.__exit__(None, None, None)


@asynccontextmanager
async def mcp_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """An initialized SDK client session, sending ``token`` as a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@dataclass
class Issuer:
    """An authorization server's signing keys, published as a JWKS over HTTP."""

    jwks_url: str
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    fetches: int = 0

    def new_key(self, kid: str) -> None:
        """Generate a key and publish it (beside the keys already published)."""
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(
                self.keys[kid].public_key(), as_dict=True
            )
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "ES256"})
        return {"keys": keys}

    def token(
        self, kid: str, *, audience: str, lifetime: float = 300, **claims: Any
    ) -> str:
        """A signed access token; ``claims`` override the defaults."""
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": audience,
            "sub": "user-1",
            "iat": now,
            "exp": now + int(lifetime),
            "scope": "images:generate images:read images:delete",
            **claims,
        }
        return jwt.encode(payload, self.keys[kid], "ES256", headers={"kid": kid})


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    """A JWKS endpoint on loopback serving :class:`Issuer`'s published keys."""
    state: list[Issuer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state[0].fetches += 1
            body = json.dumps(state[0].jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.append(Issuer(f"http://127.0.0.1:{httpd.server_address[1]}/jwks.json"))
    thread = threading.Thread(target=httpd.serve_forever)
    thread.start()
    try:
        yield state[0]
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()
