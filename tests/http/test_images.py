"""``GET``/``HEAD /images/{id}``: signed capability URLs to stored images.

A real ``serve --transport http`` subprocess with file storage; the tests sign
URLs themselves with the secret they hand the server (the documented scheme:
HMAC-SHA256 of ``<id>:<exp>``, base64url without padding), so the format is
pinned independently of the code that signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import mcp
import pytest
from mcp.types import CallToolResult, TextContent

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings, redacted_dump, settings_from_dict
from mcp_imagegen.errors import ConfigurationError
from tests.conftest import stored_file
from tests.http.conftest import HttpServer, StartServer, free_port

pytestmark = pytest.mark.anyio

SECRET = "k1-images-test-secret-0123456789abcdef"
TOKEN = "images-test-token-5d1e8a"
UNKNOWN_ID = "20260101T000000000-0123456789ab"


def sign(image_id: str, exp: int, secret: str = SECRET) -> str:
    """The documented signature of ``image_id`` valid until ``exp``."""
    digest = hmac.new(
        secret.encode(), f"{image_id}:{exp}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def signed_path(image_id: str, exp: int, secret: str = SECRET) -> str:
    return f"/images/{image_id}?exp={exp}&sig={sign(image_id, exp, secret)}"


def test_url_settings_default_mask_and_explain() -> None:
    defaults = settings_from_dict({}).server.http
    assert defaults.url_secret is None  # generated per process
    assert defaults.url_ttl.total_seconds() == 24 * 3600
    shown = redacted_dump(
        settings_from_dict({"server": {"http": {"url_secret": SECRET}}})
    )
    assert shown["server"]["http"]["url_secret"] != SECRET
    assert SECRET not in str(shown)

    with pytest.raises(ConfigurationError) as short:
        settings_from_dict({"server": {"http": {"url_secret": "tiny-secret"}}})
    with pytest.raises(ConfigurationError) as zero:
        settings_from_dict({"server": {"http": {"url_ttl": 0}}})
    assert "server.http.url_secret" in str(short.value)
    assert "32" in str(short.value)
    assert "tiny-secret" not in str(short.value)
    assert "server.http.url_ttl" in str(zero.value)


async def generate(server: HttpServer, **headers: str) -> CallToolResult:
    with anyio.fail_after(60):
        async with server.session(**headers) as session:
            result = await session.call_tool(
                "generate_image", {"prompt": "a lighthouse", "width": 128, "height": 64}
            )
    assert not result.is_error, result.content
    return result


def start_public(start_server: StartServer, **tables: Any) -> HttpServer:
    """A server whose public_url is its own base URL, with a known URL secret."""
    port = free_port()
    return start_server(
        config={
            "server.http": {"port": port, "public_url": f"http://127.0.0.1:{port}"},
            **tables,
        },
        env={
            "MCP_IMAGEGEN_SERVER__HTTP__URL_SECRET": SECRET,
            "MCP_IMAGEGEN_SERVER__AUTH__TOKENS": TOKEN,
        },
    )


async def test_results_link_a_signed_url_that_serves_the_image_without_a_token(
    start_server: StartServer,
) -> None:
    server = start_public(start_server, **{"server.auth": {"mode": "bearer"}})
    with anyio.fail_after(60):
        async with server.session(Authorization=f"Bearer {TOKEN}") as session:
            result = await session.call_tool(
                "generate_image", {"prompt": "a lighthouse", "width": 128, "height": 64}
            )
            [info] = result.structured_content["images"]  # type: ignore[index]
            image_id, url = info["id"], info["url"]
            # The server's own file path means nothing to a remote client.
            assert info["path"] is None
            got_image = await session.call_tool(
                "get_image", {"image_id": image_id, "inline": "none"}
            )
            listed = await session.call_tool("list_images", {})
    stored = stored_file(server.images, image_id, "png").read_bytes()

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    exp = int(query["exp"][0])
    # The browser opens the link as is: no bearer token.
    async with httpx.AsyncClient() as client:
        got = await client.get(url)
        head = await client.head(url)
        cached = await client.get(url, headers={"If-None-Match": got.headers["etag"]})
        other_etag = await client.get(url, headers={"If-None-Match": '"abc"'})

    assert f"{parts.scheme}://{parts.netloc}" == server.base
    assert parts.path == f"/images/{image_id}"
    assert query["sig"] == [sign(image_id, exp)]
    # Valid for url_ttl's default (24 h) from now, give or take the test's time.
    assert 0 < exp - time.time() <= 24 * 3600
    [text] = [b for b in result.content if isinstance(b, TextContent)]
    assert url in text.text
    # Every tool that describes an image links it the same way.
    later = [got_image.structured_content["url"]] + [  # type: ignore[index]
        i["url"]
        for i in listed.structured_content["images"]  # type: ignore[index]
    ]
    for link in later:
        assert link.startswith(f"{server.base}/images/{image_id}?exp="), link
    assert query["sig"][0] not in server.log_text()

    assert got.status_code == 200
    assert got.content == stored
    assert got.headers["content-type"] == "image/png"
    assert got.headers["content-length"] == str(len(stored))
    assert got.headers["etag"] == f'"{hashlib.sha256(stored).hexdigest()}"'
    directives = {d.strip() for d in got.headers["cache-control"].split(",")}
    [max_age] = [d for d in directives if d.startswith("max-age=")]
    assert directives - {max_age} == {"private", "immutable"}
    # Never cached past the signature's validity.
    assert 0 < int(max_age.removeprefix("max-age=")) <= exp - time.time() + 1

    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "content-length", "etag", "cache-control"):
        assert head.headers[name] == got.headers[name], name

    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == got.headers["etag"]
    assert other_etag.status_code == 200
    assert other_etag.content == stored


async def test_wrong_missing_or_expired_signatures_are_refused_with_403(
    start_server: StartServer,
) -> None:
    server = start_public(start_server)
    result = await generate(server)
    [info] = result.structured_content["images"]  # type: ignore[index]
    image_id = info["id"]
    future = int(time.time()) + 600
    good = sign(image_id, future)
    tampered = ("A" if good[0] != "A" else "B") + good[1:]
    refused = {
        "tampered": f"/images/{image_id}?exp={future}&sig={tampered}",
        "other secret": signed_path(image_id, future, secret=SECRET + "x"),
        "exp moved": f"/images/{image_id}?exp={future + 1}&sig={good}",
        "no sig": f"/images/{image_id}?exp={future}",
        "no query": f"/images/{image_id}",
        "expired": signed_path(image_id, int(time.time()) - 5),
        "exp not a number": f"/images/{image_id}?exp=soon&sig={good}",
        "other image's sig": f"/images/{image_id}?exp={future}"
        f"&sig={sign(UNKNOWN_ID, future)}",
    }
    async with httpx.AsyncClient(base_url=server.base) as client:
        answers = {name: await client.get(path) for name, path in refused.items()}
        heads = {name: await client.head(path) for name, path in refused.items()}
        fine = await client.get(signed_path(image_id, future))

    for name, answer in answers.items():
        assert answer.status_code == 403, name
        assert answer.headers["content-type"] == "application/json", name
        error = answer.json()["error"]
        assert "signature" in error or "expired" in error, (name, error)
        assert heads[name].status_code == 403, name
    assert "expired" in answers["expired"].json()["error"]
    assert fine.status_code == 200
    log = server.log_text()
    assert SECRET not in log
    assert good not in log and tampered not in log


async def test_unknown_and_malformed_ids_are_404_and_never_leave_the_store(
    start_server: StartServer,
) -> None:
    server = start_public(start_server)
    # A file next to the data folder that a traversal would reach.
    (server.images.parent / "secret.json").parent.mkdir(parents=True, exist_ok=True)
    (server.images.parent / "secret.json").write_text('{"not": "an image"}')
    future = int(time.time()) + 600
    malformed = [
        "..%2F..%2Fsecret",
        "..%2Fsecret.json",
        "%2E%2E",
        "2" * 300,
        UNKNOWN_ID + "0",
        UNKNOWN_ID.upper(),
    ]
    async with httpx.AsyncClient(base_url=server.base) as client:
        unknown = await client.get(signed_path(UNKNOWN_ID, future))
        unknown_head = await client.head(signed_path(UNKNOWN_ID, future))
        bad = {
            raw: await client.get(f"/images/{raw}?exp={future}&sig={sign(raw, future)}")
            for raw in malformed
        }
        still_serving = await client.get("/healthz")

    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/json"
    assert UNKNOWN_ID in unknown.json()["error"]
    assert unknown_head.status_code == 404
    for raw, answer in bad.items():
        assert answer.status_code == 404, raw
        assert answer.headers["content-type"] == "application/json", raw
        assert "not an image" not in answer.text
        assert "image id" in answer.json()["error"], raw
    assert still_serving.status_code == 200


async def test_a_storage_error_is_a_503_and_logged(start_server: StartServer) -> None:
    server = start_public(start_server)
    result = await generate(server)
    [info] = result.structured_content["images"]  # type: ignore[index]
    # Fault at the boundary: the stored record can no longer be parsed.
    stored_file(server.images, info["id"], "json").write_text("{", encoding="utf-8")
    async with httpx.AsyncClient() as client:
        got = await client.get(info["url"])
        head = await client.head(info["url"])
        still_serving = await client.get(server.base + "/healthz")

    assert got.status_code == 503
    assert got.headers["content-type"] == "application/json"
    assert "storage" in got.json()["error"]
    assert head.status_code == 503
    assert still_serving.status_code == 200
    assert re.search(r'"event": "image_route_storage_error"', server.log_text())


async def test_without_public_url_file_storage_keeps_its_file_url(
    start_server: StartServer,
) -> None:
    server = start_server(env={"MCP_IMAGEGEN_SERVER__HTTP__URL_SECRET": SECRET})
    result = await generate(server)
    [info] = result.structured_content["images"]  # type: ignore[index]

    assert info["url"].startswith("file://")
    assert info["url"].endswith(f"/{info['id']}.png")


async def test_stdio_results_keep_file_urls_even_with_public_url(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        {"server": {"http": {"public_url": "https://images.example.com"}}}
    )
    with anyio.fail_after(60):
        async with mcp.Client(create_server(settings)) as client:
            result = await client.call_tool(
                "generate_image", {"prompt": "a dune", "width": 64, "height": 64}
            )
    [info] = result.structured_content["images"]  # type: ignore[index]
    [text] = [b for b in result.content if isinstance(b, TextContent)]

    assert info["url"].startswith("file://")
    assert info["path"] in text.text


async def test_replicas_need_the_shared_secret_for_each_others_links(
    start_server: StartServer,
) -> None:
    # Without url_secret each process signs with its own: B refuses A's link.
    alone_a = start_server(
        config={"server.http": {"public_url": "http://images.example.com"}}
    )
    alone_b = start_server()
    # With the secret shared, B serves A's link (one image folder stands in
    # for the shared bucket: both use the same storage directory).
    shared_a = start_public(start_server)
    shared_b = start_public(start_server)
    assert shared_a.images == shared_b.images == alone_a.images == alone_b.images

    alone = (await generate(alone_a)).structured_content["images"][0]["url"]  # type: ignore[index]
    shared = (await generate(shared_a)).structured_content["images"][0]["url"]  # type: ignore[index]
    path = urlsplit(alone).path + "?" + urlsplit(alone).query
    async with httpx.AsyncClient() as client:
        on_b = await client.get(alone_b.base + path)
        shared_on_b = await client.get(shared.replace(shared_a.base, shared_b.base, 1))

    assert on_b.status_code == 403
    assert "signature" in on_b.json()["error"]
    assert shared_on_b.status_code == 200
