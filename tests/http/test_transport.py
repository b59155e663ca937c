"""Every tool and the image resource over streamable HTTP, against a real uvicorn."""

from __future__ import annotations

import base64
from typing import Any

import anyio
import httpx
import pytest
from mcp.types import BlobResourceContents, CallToolResult, ResourceLink

from tests.conftest import image_size, stored_file
from tests.http.conftest import INITIALIZE, MCP_HEADERS, StartServer, free_port

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("stateless", [True, False])
async def test_every_tool_and_the_image_resource_work_over_http(
    start_server: StartServer, stateless: bool
) -> None:
    server = start_server(
        config={"server.http": {"stateless": stateless}},
        args=["--log-level", "info"],
    )
    progress: list[tuple[float, float | None]] = []

    async def on_progress(
        done: float, total: float | None, message: str | None
    ) -> None:
        progress.append((done, total))

    with anyio.fail_after(60):
        async with server.session() as session:
            tools = await session.list_tools()
            generated: Any = await session.call_tool(
                "generate_image",
                {"prompt": "a harbour", "width": 128, "height": 64, "steps": 4},
                progress_callback=on_progress,
            )
            assert isinstance(generated, CallToolResult)
            assert not generated.is_error, generated.content
            [image_id] = [i["id"] for i in generated.structured_content["images"]]
            [link] = [b for b in generated.content if isinstance(b, ResourceLink)]
            resource = await session.read_resource(str(link.uri))
            listed = await session.call_tool("list_images", {})
            got = await session.call_tool("get_image", {"image_id": image_id})
            transformed = await session.call_tool(
                "transform_image",
                {"image_id": image_id, "postprocess": ["metadata"]},
            )
            backends = await session.call_tool("list_backends", {})
            resources = await session.list_resources()
            deleted = await session.call_tool("delete_image", {"image_id": image_id})
            missing = await session.call_tool("get_image", {"image_id": image_id})

    assert {t.name for t in tools.tools} >= {
        "generate_image",
        "transform_image",
        "list_images",
        "get_image",
        "delete_image",
        "list_backends",
    }
    # Progress notifications travel on the POST's SSE response stream.
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    [blob] = resource.contents
    assert isinstance(blob, BlobResourceContents)
    assert blob.mime_type == "image/png"
    assert image_size(base64.b64decode(blob.blob)) == (128, 64)
    assert image_id in {i["id"] for i in listed.structured_content["images"]}  # type: ignore[index]
    assert not got.is_error
    assert not transformed.is_error
    [new] = transformed.structured_content["images"]  # type: ignore[index]
    assert new["source_image_id"] == image_id
    assert {b["name"] for b in backends.structured_content["backends"]} == {  # type: ignore[index]
        "placeholder"
    }
    assert f"image://{image_id}" in {str(r.uri) for r in resources.resources}
    assert not deleted.is_error
    assert missing.is_error
    assert not list(server.images.rglob(f"{image_id}.*"))
    assert stored_file(server.images, new["id"], "png").is_file()
    # The service (its components) started once for the process, not per request.
    started = [
        line for line in server.log_text().splitlines() if "server_started" in line
    ]
    assert len(started) == 1, server.log_text()


async def test_healthz_and_readyz_answer_while_serving(
    start_server: StartServer,
) -> None:
    server = start_server()
    async with httpx.AsyncClient(base_url=server.base) as client:
        health = await client.get("/healthz")
        ready = await client.get("/readyz")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"


async def test_readyz_is_503_naming_a_backend_that_cannot_be_reached(
    start_server: StartServer,
) -> None:
    closed = free_port()  # nothing listens there
    server = start_server(
        config={
            "generation": {"backend": "remote"},
            "backends.remote": {
                "type": "kserve",
                "url": f"http://127.0.0.1:{closed}",
                "model": "sd",
                "connect_timeout": 2,
            },
        }
    )
    async with httpx.AsyncClient(base_url=server.base) as client:
        ready = await client.get("/readyz")
        health = await client.get("/healthz")

    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not ready"
    assert set(body["not_ready"]) == {"backend:remote"}
    assert body["checks"] == {
        "backend:remote": {"status": "unavailable"},
        "storage:file": {"status": "ok"},
    }
    # The endpoint is unauthenticated: internal URLs and errors go to the log only.
    assert str(closed) not in ready.text
    assert f"127.0.0.1:{closed}" in server.log_text()
    assert health.status_code == 200


async def test_path_setting_moves_the_mcp_endpoint(start_server: StartServer) -> None:
    server = start_server(config={"server.http": {"path": "/v1/mcp"}})
    with anyio.fail_after(30):
        async with server.session() as session:
            tools = await session.list_tools()
    async with httpx.AsyncClient(base_url=server.base) as client:
        old = await client.post("/mcp", json={})

    assert tools.tools
    assert old.status_code == 404


async def test_stateful_sessions_are_bounded_in_number_and_idle_time(
    start_server: StartServer,
) -> None:
    server = start_server(
        config={
            "server.http": {
                "stateless": False,
                "max_sessions": 1,
                "session_idle_timeout": 1,
            }
        }
    )
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    async with httpx.AsyncClient(headers=MCP_HEADERS) as client:
        first = await client.post(server.url, json=INITIALIZE)
        session = {"Mcp-Session-Id": first.headers["mcp-session-id"]}
        second = await client.post(server.url, json=INITIALIZE)
        alive = await client.post(server.url, json=ping, headers=session)
        # Idle past the timeout: the session is closed, its id unknown, and its
        # slot free again. A request restarts the idle clock, so each look
        # waits longer (a slow machine gets more time; no speed is checked).
        for idle in (2, 4, 8, 16):
            await anyio.sleep(idle)
            gone = await client.post(server.url, json=ping, headers=session)
            if gone.status_code != 200:
                break
        third = await client.post(server.url, json=INITIALIZE)

    assert first.status_code == 200
    assert second.status_code == 503
    assert "Too many open sessions" in second.text
    assert alive.status_code == 200
    assert gone.status_code == 404
    assert third.status_code == 200


def test_env_variable_beats_the_file_and_the_flag_beats_both(
    start_server: StartServer,
) -> None:
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    env = {"MCP_IMAGEGEN_SERVER__HTTP__PORT": str(env_port)}
    by_env = start_server(
        config={"server.http": {"port": file_port}}, env=env, port=env_port
    )
    by_flag = start_server(
        config={"server.http": {"port": file_port}},
        env=env,
        args=["--port", str(flag_port)],
        port=flag_port,
    )

    assert httpx.get(by_env.base + "/healthz").json() == {"status": "ok"}
    assert httpx.get(by_flag.base + "/healthz").json() == {"status": "ok"}
