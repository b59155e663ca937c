"""Running the Node task clients (``*.mjs`` beside this module) against a server.

Each script starts ``mcp-imagegen serve`` over stdio itself (``SERVER_COMMAND``,
``SERVER_ENV``) or connects to ``SERVER_URL``, calls ``generate_image`` with
``TOOL_ARGUMENTS`` and prints one JSON event per line.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.conftest import MCP_IMAGEGEN_BIN
from tests.node.tools import node_tools
from tests.tasks.test_protocol import VOLATILE


def run_client(
    script: Path,
    mode: str,
    steps: int,
    subprocess_env: dict[str, str],
    tmp_path: Path,
    server_url: str | None,
    *,
    client_env: Mapping[str, str],
    server_env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run ``script mode``; return its events. The server's placeholder is slow
    (100 ms a step), so ``steps`` sets how long the generation takes."""
    tools = node_tools()
    env = {
        **subprocess_env,
        "MCP_IMAGEGEN_STORAGE__FILE__DIRECTORY": str(tmp_path / "images"),
        "MCP_IMAGEGEN_BACKENDS__PLACEHOLDER__DELAY_MS": "100",
        **(server_env or {}),
    }
    where = {"SERVER_URL": server_url} if server_url else {}
    arguments = {"prompt": "a lighthouse", "width": 64, "height": 64, "seed": 7}
    with (tmp_path / "node.log").open("w") as errlog:
        done = subprocess.run(
            [str(tools.node), str(script), mode],
            env={
                **tools.env(tmp_path / "home"),
                **client_env,
                "SERVER_COMMAND": str(MCP_IMAGEGEN_BIN),
                "SERVER_ENV": json.dumps(env),
                "TOOL_ARGUMENTS": json.dumps({**arguments, "steps": steps}),
                **where,
            },
            stdout=subprocess.PIPE,
            stderr=errlog,
            timeout=120,
            check=False,
        )
    log = (tmp_path / "node.log").read_text()
    assert done.returncode == 0, log
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def images(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A result's structured images without the fields that differ per call."""
    return [
        {k: v for k, v in image.items() if k not in VOLATILE}
        for image in result["structuredContent"]["images"]
    ]


def slow_server_url(
    start_server: Any, tmp_path: Path, tasks: Mapping[str, Any] | None = None
) -> str:
    """The URL of a server over streamable HTTP whose placeholder takes 100 ms a
    step (images in the test's folder; ``tasks``: ``[server.tasks]`` settings)."""
    config: dict[str, Any] = {
        "storage.file": {"directory": str(tmp_path / "images")},
        "backends.placeholder": {"delay_ms": 100},
    }
    if tasks:
        config["server.tasks"] = dict(tasks)
    return str(start_server(config=config).url)
