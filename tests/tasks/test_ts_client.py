"""A real task-aware client: the TypeScript SDK's experimental tasks API.

Over stdio (the SDK starts the server) and streamable HTTP (stateless: each
request stands alone, the task goes on in the server between them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.http.conftest import StartServer, start_server  # noqa: F401
from tests.node.tools import node_tools
from tests.tasks.node_clients import images, run_client, slow_server_url

SCRIPT = Path(__file__).with_name("ts_client.mjs")


@pytest.fixture(params=["stdio", "http"])
def server_url(
    request: pytest.FixtureRequest,
    start_server: StartServer,  # noqa: F811
    tmp_path: Path,
) -> str | None:
    """``None`` for stdio; else the URL of a server over streamable HTTP."""
    if request.param == "stdio":
        return None
    return slow_server_url(start_server, tmp_path)


def _run(
    mode: str,
    steps: int,
    subprocess_env: dict[str, str],
    tmp_path: Path,
    server_url: str | None,
) -> list[dict[str, Any]]:
    return run_client(
        SCRIPT,
        mode,
        steps,
        subprocess_env,
        tmp_path,
        server_url,
        client_env={"MCP_SDK_DIR": str(node_tools().mcp_sdk)},
    )


def test_the_typescript_sdk_streams_a_task_to_the_synchronous_result(
    subprocess_env: dict[str, str], tmp_path: Path, server_url: str | None
) -> None:
    events = _run("stream", 12, subprocess_env, tmp_path, server_url)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["event"], []).append(event)

    [connected] = by_type["connected"]
    assert connected["tasks"] == {
        "list": {},
        "cancel": {},
        "requests": {"tools": {"call": {}}},
    }
    execution = by_type["tools"][0]["execution"]
    assert execution["generate_image"] == {"taskSupport": "optional"}
    [created] = by_type["taskCreated"]
    assert created["task"]["status"] == "working"
    assert created["task"]["ttl"] == 60_000
    statuses = [e["task"] for e in by_type["taskStatus"]]
    assert any("step" in (t.get("statusMessage") or "") for t in statuses)
    assert statuses[-1]["status"] == "completed"
    [result] = by_type["result"]
    [synchronous] = by_type["synchronous"]
    assert "error" not in by_type
    assert not result["result"].get("isError")
    assert images(result["result"]) == images(synchronous["result"])
    assert [c["type"] for c in result["result"]["content"]] == [
        c["type"] for c in synchronous["result"]["content"]
    ]


def test_the_typescript_sdk_cancels_a_task_mid_way_and_nothing_is_stored(
    subprocess_env: dict[str, str], tmp_path: Path, server_url: str | None
) -> None:
    run = _run("cancel", 50, subprocess_env, tmp_path, server_url)
    events = {e["event"]: e for e in run}

    task_id = events["taskCreated"]["task"]["taskId"]
    assert events["cancelled"]["task"]["status"] == "cancelled"
    assert events["after"]["task"]["status"] == "cancelled"
    assert events["resultAfterCancel"]["code"] == -32602
    assert "cancelled" in events["resultAfterCancel"]["error"]
    assert [t["taskId"] for t in events["listed"]["tasks"]] == [task_id]
    assert not list((tmp_path / "images").rglob("*.png"))
