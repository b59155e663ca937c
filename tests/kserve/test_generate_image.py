"""generate_image end to end: MCP client → server → KServeBackend → real KServe.

Each predictor contract stores real, readable images of the requested size; each
fault comes back as a clear ``isError`` result, and the next call succeeds.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings, settings_from_dict
from tests.kserve.rendering import corner_color, image_size, seed_color
from tests.kserve.support import FAST_RETRIES, KServeServer

pytestmark = [pytest.mark.anyio, pytest.mark.kserve]

#: Backend instances, all of type "kserve", on the one test server.
INSTANCES: dict[str, dict[str, Any]] = {
    "sd": {"model": "sd-v1"},
    "sd-v2": {"model": "sd-v2", "protocol": "v2"},
    "sd-v2-binary": {"model": "sd-v2", "protocol": "v2", "binary_data": True},
    "triton": {
        "model": "triton-sd",
        "protocol": "v2",
        "prompt_shape": [1, 1],
        "binary_data": True,
    },
    "invalid": {"model": "fault-invalid"},
    "coldstart": {"model": "fault-coldstart"},
    "broken": {"model": "fault-500"},
    "slow": {"model": "fault-slow", "timeout": 0.3},
    "heartbeat": {
        "model": "fault-slow",
        "heartbeat_interval": 0.05,
        "extra_parameters": {"delay": 0.4},
    },
    "noimage": {"model": "fault-noimage"},
    "corrupt": {"model": "fault-corrupt"},
    "sleeping": {"model": "sleeping", "max_retries": 1},
}


@pytest.fixture
def settings(kserve_server: KServeServer, tmp_path: Path) -> Settings:
    backends = {
        name: {"type": "kserve", "url": kserve_server.url, **FAST_RETRIES, **table}
        for name, table in INSTANCES.items()
    }
    return settings_from_dict(
        {
            "generation": {"backend": "sd"},
            "backends": backends,
            "storage": {"backend": "file", "file": {"directory": str(tmp_path)}},
        }
    )


async def generate(client: Client, **arguments: Any) -> Any:
    base = {"prompt": f"a lighthouse {uuid.uuid4().hex[:6]}", "width": 96, "height": 64}
    return await client.call_tool("generate_image", {**base, **arguments})


async def read_image(client: Client, uri: str) -> bytes:
    result = await client.read_resource(uri)
    [content] = result.contents
    return base64.b64decode(content.blob)  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", ["sd", "sd-v2", "sd-v2-binary", "triton"])
async def test_each_contract_stores_readable_images_of_the_requested_size(
    settings: Settings, backend: str
) -> None:
    async with Client(create_server(settings)) as client:
        result = await generate(client, backend=backend, num_images=2, seed=5)

        assert not result.is_error, result.content
        images = result.structured_content["images"]
        assert [(i["backend"], i["seed"]) for i in images] == [
            (backend, 5),
            (backend, 6),
        ]
        for info in images:
            data = await read_image(client, info["uri"])
            assert (info["width"], info["height"]) == (96, 64)
            assert image_size(data) == (96, 64)
            assert corner_color(data) == seed_color(info["seed"])
            assert await anyio.Path(info["path"]).read_bytes() == data


async def test_the_default_backend_is_the_configured_kserve_instance(
    settings: Settings,
) -> None:
    async with Client(create_server(settings)) as client:
        result = await generate(client)

    [info] = result.structured_content["images"]
    assert (info["backend"], info["model"]) == ("sd", "sd-v1")


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("invalid", ["'invalid'", "400", "refused by the safety checker"]),
        ("broken", ["'broken'", "500", "CUDA out of memory"]),
        ("slow", ["'slow'", "did not answer within 0.3 s"]),
        ("noimage", ["'noimage'", "holds no image"]),
        ("corrupt", ["'corrupt'", "not a usable image"]),
        ("sleeping", ["'sleeping'", "503", "not ready"]),
    ],
)
async def test_each_fault_is_a_clear_error_and_the_next_call_succeeds(
    settings: Settings, backend: str, expected: list[str]
) -> None:
    async with Client(create_server(settings)) as client:
        failed = await generate(client, backend=backend)
        after = await generate(client)

    assert failed.is_error
    text = failed.content[0].text  # type: ignore[union-attr]
    for part in expected:
        assert part in text
    assert not after.is_error, after.content


async def test_a_cold_start_is_waited_out(settings: Settings) -> None:
    async with Client(create_server(settings)) as client:
        result = await generate(client, backend="coldstart")

    assert not result.is_error, result.content


async def test_heartbeat_progress_reaches_the_client(settings: Settings) -> None:
    messages: list[str] = []

    async def on_progress(
        progress: float, total: float | None, message: str | None
    ) -> None:
        messages.append(message or "")

    async with Client(create_server(settings)) as client:
        result = await client.call_tool(
            "generate_image",
            {
                "prompt": "a lighthouse",
                "width": 96,
                "height": 64,
                "backend": "heartbeat",
            },
            progress_callback=on_progress,
        )

    assert not result.is_error, result.content
    assert any(m.startswith("waiting for model 'fault-slow' — ") for m in messages)


async def test_list_backends_shows_health_and_capabilities(settings: Settings) -> None:
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("list_backends", {})

    backends = {b["name"]: b for b in result.structured_content["backends"]}
    assert backends["sd"]["type"] == "kserve"
    assert backends["sd"]["default"] is True
    assert backends["sd"]["health"]["status"] == "ok"
    assert backends["sd"]["capabilities"]["models"] == ["sd-v1"]
    assert backends["sleeping"]["health"]["status"] == "degraded"
