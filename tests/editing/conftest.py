"""Fixtures of the image-input tests: servers, clients and a real image server.

``image_server`` is a real HTTP server on 127.0.0.1 (``http.server`` in a
thread) that serves images, text, redirects, endless and slow bodies: the
misbehaving far end that the URL fetcher must survive.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import mcp
import pytest
from PIL import Image

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import PluginManager


def picture(size: tuple[int, int] = (96, 64), seed: int = 1) -> bytes:
    """A PNG with varied pixels (a gradient and a block), ``size`` large."""
    image = Image.new("RGB", size)
    image.putdata(
        [
            ((x * 7 + seed) % 256, (y * 5 + seed) % 256, (x + y) % 256)
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class ImageServer:
    """The running server: its base URL and the paths it was asked for."""

    port: int
    picture: bytes
    requests: list[str] = field(default_factory=list)
    #: The Host header of each request.
    hosts: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        state.requests.append(parts.path)
        state.hosts.append(self.headers.get("Host", ""))
        query = parse_qs(parts.query)
        if parts.path == "/picture.png":
            self._send(200, state.picture, "image/png")
        elif parts.path == "/text":
            self._send(200, b"hello, not an image", "text/plain")
        elif parts.path == "/missing":
            self._send(404, b"no", "text/plain")
        elif parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
        elif parts.path == "/endless":
            self._stream(chunk=b"\x89PNG" * 16384, pause=0.0)
        elif parts.path == "/slow":
            self._stream(chunk=b"\x89", pause=0.1)
        else:
            self._send(404, b"unknown", "text/plain")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, chunk: bytes, pause: float) -> None:
        """A body without end (bounded, so a broken test cannot hang the run)."""
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        try:
            for _ in range(2000):
                self.wfile.write(chunk)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
        except OSError:
            pass  # the client hung up, as it should


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ImageServer


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    """A real HTTP server on 127.0.0.1 serving images and misbehaving bodies."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = ImageServer(port=server.server_address[1], picture=picture())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def connect(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> Callable[..., mcp.Client]:
    """A factory of in-memory clients of a fresh server for some settings."""

    def client(data: dict[str, Any] | None = None) -> mcp.Client:
        return mcp.Client(create_server(make_settings(data), plugin_manager))

    return client


def stored_count(image_dir: Path) -> int:
    """How many images (not records) the file storage holds."""
    return sum(
        1
        for p in image_dir.rglob("*")
        if p.is_file() and p.suffix in (".png", ".jpg", ".webp", ".gif")
    )
