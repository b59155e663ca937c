"""Bad image input through a real in-memory MCP session.

Each case is a clear tool error naming the argument and what is accepted, the
server keeps serving, and nothing is stored.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp
import pytest
from mcp.types import CallToolResult, TextContent
from PIL import Image

from tests.editing.conftest import ImageServer, picture, stored_count

pytestmark = pytest.mark.anyio

LOOPBACK_ALLOWED = {
    "inputs": {"allowed_hosts": ["127.0.0.1"], "allow_private_addresses": True}
}


def data_uri(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def error_text(result: CallToolResult, tool: str) -> str:
    assert result.is_error, result
    [text] = [b for b in result.content if isinstance(b, TextContent)]
    assert "Traceback" not in text.text
    return text.text.removeprefix(f"Error executing tool {tool}: ")


async def refused(
    connect: Callable[..., mcp.Client],
    image_dir: Path,
    tool: str,
    arguments: dict[str, Any],
    settings: dict[str, Any] | None = None,
) -> str:
    """Call ``tool``; return its error text once sure nothing was stored."""
    async with connect(settings) as client:
        result = await client.call_tool(tool, arguments)
        # The server still serves.
        still = await client.call_tool("list_backends", {})
        assert not still.is_error
    assert stored_count(image_dir) == 0
    return error_text(result, tool)


async def test_not_an_image(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    text = await refused(
        connect,
        image_dir,
        "edit_image",
        {"image": data_uri(b"hello, I am text"), "prompt": "x"},
    )
    assert text == (
        "image: The data is not a readable image. Give a PNG, JPEG, WebP or GIF "
        "image (at most 67108864 pixels, inputs.max_pixels)."
    )
    assert "PNG, JPEG, WebP or GIF" in text


async def test_not_an_image_from_a_url(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    text = await refused(
        connect,
        image_dir,
        "ingest_image",
        {"url": image_server.url("/text")},
        LOOPBACK_ALLOWED,
    )
    assert text.startswith("url: The data is not a readable image")


async def test_a_decompression_bomb(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    # 9000² one-bit pixels: 10 KB of PNG, 81 megapixels (the default cap is 67).
    bomb = png(Image.new("1", (9000, 9000)))
    assert len(bomb) < 100_000
    for tool, arguments in (
        ("edit_image", {"image": data_uri(bomb), "prompt": "x"}),
        ("ingest_image", {"data": data_uri(bomb)}),
    ):
        text = await refused(connect, image_dir, tool, arguments)
        assert "9000x9000 pixels, more than the limit of 67108864" in text
        assert "inputs.max_pixels" in text


async def test_a_mask_of_another_size(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    text = await refused(
        connect,
        image_dir,
        "edit_image",
        {
            "image": data_uri(picture((96, 64))),
            "mask": data_uri(png(Image.new("L", (50, 50), 255))),
            "prompt": "x",
        },
    )
    assert text.startswith("mask is 50x50 pixels but the image is 96x64")


@pytest.mark.parametrize("strength", [-0.1, 1.5])
async def test_strength_outside_zero_to_one(
    connect: Callable[..., mcp.Client], image_dir: Path, strength: float
) -> None:
    text = await refused(
        connect,
        image_dir,
        "edit_image",
        {"image": data_uri(picture()), "prompt": "x", "strength": strength},
    )
    assert text.startswith(f"strength {strength} is out of range: use 0")


async def test_a_data_uri_over_the_cap(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    big = png(Image.frombytes("RGB", (96, 64), os.urandom(96 * 64 * 3)))
    assert len(big) > 2048
    for tool, arguments in (
        ("edit_image", {"image": data_uri(big), "prompt": "x"}),
        ("ingest_image", {"data": data_uri(big)}),
    ):
        text = await refused(
            connect, image_dir, tool, arguments, {"inputs": {"max_bytes": 2048}}
        )
        assert "more than inputs.max_bytes = 2048" in text


async def test_paths_are_off_by_default(
    connect: Callable[..., mcp.Client], image_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(picture())
    text = await refused(
        connect, image_dir, "ingest_image", {"path": str(tmp_path / "a.png")}
    )
    assert text.startswith("path: reading local files is off; set inputs.allowed_dirs")


async def test_a_path_outside_the_allowed_directories(
    connect: Callable[..., mcp.Client], image_dir: Path, tmp_path: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    secret = tmp_path / "secret.png"
    secret.write_bytes(picture())
    (allowed / "link.png").symlink_to(secret)
    settings = {"inputs": {"allowed_dirs": [str(allowed)]}}
    for path in (
        str(secret),
        str(allowed / ".." / "secret.png"),
        str(allowed / "link.png"),  # a symlink out
        f"file://{secret}",
    ):
        for tool, arguments in (
            ("ingest_image", {"path": path}),
            ("edit_image", {"image": path, "prompt": "x"}),
        ):
            text = await refused(connect, image_dir, tool, arguments, settings)
            assert "is not under a directory of inputs.allowed_dirs" in text


async def test_urls_are_off_by_default(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    text = await refused(
        connect, image_dir, "ingest_image", {"url": image_server.url("/picture.png")}
    )
    assert text.startswith("url: fetching URLs is off; set inputs.allowed_hosts")
    assert image_server.requests == []


async def test_a_host_not_allowed(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    text = await refused(
        connect,
        image_dir,
        "edit_image",
        {"image": image_server.url("/picture.png", host="localhost"), "prompt": "x"},
        LOOPBACK_ALLOWED,
    )
    assert "host 'localhost' of" in text and "is not in inputs.allowed_hosts" in text
    assert image_server.requests == []


async def test_a_url_resolving_to_a_private_address(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    settings = {"inputs": {"allowed_hosts": ["localhost", "127.0.0.1"]}}
    for host in ("localhost", "127.0.0.1"):
        text = await refused(
            connect,
            image_dir,
            "ingest_image",
            {"url": image_server.url("/picture.png?sig=abc123", host=host)},
            settings,
        )
        assert "resolves to 127.0.0.1, a loopback, private, link-local" in text
        assert "inputs.allow_private_addresses" in text
        assert "abc123" not in text  # the query never echoes
    assert image_server.requests == []


async def test_a_redirect_to_a_private_address(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    # 127.0.0.1 is let through by allowed_networks; the redirect target,
    # 127.0.0.2 (loopback, allowed host), is not: every hop is checked again.
    settings = {
        "inputs": {
            "allowed_hosts": ["127.0.0.1", "127.0.0.2"],
            "allowed_networks": ["127.0.0.1/32"],
        }
    }
    target = image_server.url("/picture.png", host="127.0.0.2")
    text = await refused(
        connect,
        image_dir,
        "ingest_image",
        {"url": image_server.url(f"/redirect?to={target}")},
        settings,
    )
    assert "resolves to 127.0.0.2, a loopback, private" in text
    assert image_server.requests == ["/redirect"]


async def test_a_redirect_to_a_host_not_allowed(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    target = image_server.url("/picture.png", host="localhost")
    text = await refused(
        connect,
        image_dir,
        "ingest_image",
        {"url": image_server.url(f"/redirect?to={target}")},
        LOOPBACK_ALLOWED,
    )
    assert "host 'localhost' of" in text
    assert image_server.requests == ["/redirect"]


async def test_a_redirect_loop(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    text = await refused(
        connect,
        image_dir,
        "ingest_image",
        {"url": image_server.url("/loop")},
        LOOPBACK_ALLOWED,
    )
    assert "redirected more than inputs.max_redirects = 3 times" in text
    assert image_server.requests == ["/loop"] * 4


async def test_an_http_error(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    text = await refused(
        connect,
        image_dir,
        "ingest_image",
        {"url": image_server.url("/missing")},
        LOOPBACK_ALLOWED,
    )
    assert text.endswith("/missing answered HTTP 404.")


async def test_an_endless_response(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    settings = {"inputs": LOOPBACK_ALLOWED["inputs"] | {"max_bytes": 256 * 1024}}
    for path in ("/endless", "/huge-declared"):
        text = await refused(
            connect,
            image_dir,
            "ingest_image",
            {"url": image_server.url(path)},
            settings,
        )
        assert "sends more than inputs.max_bytes = 262144 bytes" in text


async def test_a_slow_response(
    connect: Callable[..., mcp.Client], image_dir: Path, image_server: ImageServer
) -> None:
    # A byte every 0.1 s never trips a read timeout; the whole-fetch one ends it.
    settings = {"inputs": LOOPBACK_ALLOWED["inputs"] | {"fetch_timeout": "PT1S"}}
    text = await refused(
        connect,
        image_dir,
        "edit_image",
        {"image": image_server.url("/slow"), "prompt": "x"},
        settings,
    )
    assert "took longer than inputs.fetch_timeout (1 s)" in text


async def test_an_unknown_reference(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    text = await refused(
        connect, image_dir, "edit_image", {"image": "cat.png", "prompt": "x"}
    )
    assert text.startswith("image: not an image reference; give a stored image id")


async def test_ingest_needs_exactly_one_source(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    text = await refused(connect, image_dir, "ingest_image", {})
    assert text.startswith("Give exactly one of data")


async def test_a_backend_without_image_input_names_those_with(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    settings = {
        "backends": {
            "placeholder": {},
            "sd": {"type": "kserve", "url": "http://127.0.0.1:9", "model": "sd"},
        }
    }
    text = await refused(
        connect,
        image_dir,
        "edit_image",
        {"image": data_uri(picture()), "prompt": "x", "backend": "sd"},
        settings,
    )
    assert (
        text == "Backend 'sd' does not take an input image; use backend 'placeholder'."
    )


async def test_a_truncated_png(
    connect: Callable[..., mcp.Client], image_dir: Path
) -> None:
    # Its header is fine: only the whole-file check that precedes passing a PNG
    # on as it is can tell.
    cut = picture((96, 64))[:-40]
    for tool, arguments in (
        ("edit_image", {"image": data_uri(cut), "prompt": "x"}),
        ("ingest_image", {"data": data_uri(cut)}),
    ):
        text = await refused(connect, image_dir, tool, arguments)
        assert "truncated or corrupt" in text


@pytest.mark.parametrize(
    "uri",
    ["data:text/plain;base64,QUJD", "data:image/png;base64", "data:image/png,QUJD"],
)
async def test_a_data_uri_that_is_not_base64_image_data(
    connect: Callable[..., mcp.Client], image_dir: Path, uri: str
) -> None:
    text = await refused(
        connect, image_dir, "edit_image", {"image": uri, "prompt": "x"}
    )
    assert text == (
        "image: a data URI must look like data:image/png;base64,<base64 data>."
    )


@pytest.mark.parametrize(
    ("mode", "extra"),
    [("RGB", {"width": 48}), ("RGBA", {})],
    ids=["resized", "flattened"],
)
async def test_a_truncated_png_whose_pixels_are_needed(
    connect: Callable[..., mcp.Client],
    image_dir: Path,
    mode: str,
    extra: dict[str, Any],
) -> None:
    # Not passed on as it is: decoded once for its pixels, and that decode is
    # the whole-file check.
    whole = png(Image.frombytes(mode, (96, 64), os.urandom(96 * 64 * len(mode))))
    arguments = {"image": data_uri(whole[:-40]), "prompt": "x"} | extra
    text = await refused(connect, image_dir, "edit_image", arguments)
    assert text.startswith("image: The image is truncated or corrupt"), text
