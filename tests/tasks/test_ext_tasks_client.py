"""A real requester of the 2026-07-28 tasks extension: npm ext-tasks.

``@modelcontextprotocol/ext-tasks`` drives its task session over the TypeScript
SDK's v2 client pinned to 2026-07-28, over stdio (the SDK starts the server)
and streamable HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.http.conftest import StartServer, start_server  # noqa: F401
from tests.node.tools import node_tools
from tests.tasks.node_clients import images, run_client, slow_server_url

SCRIPT = Path(__file__).with_name("ext_tasks_client.mjs")
#: Fast polls (the client honours pollIntervalMs), so progress is seen.
POLL = "PT0.2S"


@pytest.fixture(params=["stdio", "http"])
def server_url(
    request: pytest.FixtureRequest,
    start_server: StartServer,  # noqa: F811
    tmp_path: Path,
) -> str | None:
    """``None`` for stdio; else the URL of a server over streamable HTTP."""
    if request.param == "stdio":
        return None
    return slow_server_url(start_server, tmp_path, {"poll_interval": 0.2})


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
        client_env={"NODE_MODULES": str(node_tools().node_modules)},
        server_env={"MCP_IMAGEGEN_SERVER__TASKS__POLL_INTERVAL": POLL},
    )


def test_ext_tasks_follows_a_task_to_the_synchronous_result(
    subprocess_env: dict[str, str], tmp_path: Path, server_url: str | None
) -> None:
    events = _run("run", 12, subprocess_env, tmp_path, server_url)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["event"], []).append(event)

    [connected] = by_type["connected"]
    assert connected["era"] == "modern"
    assert connected["extensions"]["io.modelcontextprotocol/tasks"] == {}
    [created] = by_type["created"]
    assert created["kind"] == "task"
    statuses = [e["task"] for e in by_type["status"]]
    assert {t["taskId"] for t in statuses} == {created["taskId"]}
    assert statuses[0]["status"] == "working"
    assert any("step" in (t.get("statusMessage") or "") for t in statuses)
    assert statuses[-1]["status"] == "completed"
    [outcome] = by_type["outcome"]
    assert outcome["status"] == "completed"
    [synchronous] = by_type["synchronous"]
    result = outcome["result"]
    assert not result.get("isError")
    assert images(result) == images(synchronous["result"])
    assert [c["type"] for c in result["content"]] == [
        c["type"] for c in synchronous["result"]["content"]
    ]


def test_ext_tasks_cancels_a_task_mid_way_and_nothing_is_stored(
    subprocess_env: dict[str, str], tmp_path: Path, server_url: str | None
) -> None:
    events = {
        e["event"]: e for e in _run("cancel", 50, subprocess_env, tmp_path, server_url)
    }

    task_id = events["created"]["taskId"]
    assert events["outcome"]["status"] == "cancelled"
    after = events["after"]["result"]
    assert (after["taskId"], after["status"]) == (task_id, "cancelled")
    assert "result" not in after
    for bad in ("unknown", "malformed"):
        assert events[bad]["kind"] == "error"
        assert events[bad]["error"]["code"] == -32602
        assert "taskId" in events["unknown"]["error"]["message"]
    assert not list((tmp_path / "images").rglob("*.png"))
