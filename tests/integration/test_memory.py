"""Memory of ``mcp-imagegen serve`` under large inline=full calls, from outside.

The server is a real child process; its resident size is read from
``/proc/<pid>/status``. Bounds are generous (the figures are in
docs/performance.md): before memory was handed back, one round of this scenario
left the server about 270 MB above its start-up size.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import MCP_IMAGEGEN_BIN

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc"),
]

LARGE = {
    "prompt": "a lighthouse on a cliff at dusk",
    "width": 2048,
    "height": 2048,
    "num_images": 4,
    "inline": "full",
}
MB = 1024  # /proc/<pid>/status counts kB


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def child_pid() -> int:
    """The ``mcp-imagegen serve`` child (other children, such as test servers
    started by session fixtures, may run beside it)."""
    me = os.getpid()
    children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    [pid] = [
        pid
        for pid in children
        if MCP_IMAGEGEN_BIN.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return int(pid)


async def test_large_inline_full_calls_give_their_memory_back(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=str(MCP_IMAGEGEN_BIN), args=["serve"], env=subprocess_env
    )
    steady: list[int] = []
    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(300):
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            pid = child_pid()
            start = rss_kb(pid)
            for _ in range(2):
                async with anyio.create_task_group() as group:
                    for _ in range(4):
                        group.start_soon(session.call_tool, "generate_image", LARGE)
                # A cheap call after the round: the large ones have fully finished.
                await session.call_tool("list_images", {"limit": 1})
                steady.append(rss_kb(pid))

    assert steady[0] - start < 100 * MB, (start, steady)
    assert steady[1] - start < 100 * MB, (start, steady)
