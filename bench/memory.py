"""Peak and steady memory of the server under large inline=full calls (issue 8, item 9).

Scenario: rounds of four concurrent ``generate_image`` calls, each 2048x2048 with
``num_images=4`` and ``inline="full"``, against ``mcp-imagegen serve`` over stdio
(default configuration: placeholder backend, metadata chain, file storage). The
server is a subprocess measured from outside through ``/proc/<pid>/status``:

- start-up RSS (after ``initialize``), the baseline;
- steady RSS after round 1 and after the last round (read after a short idle);
- peak RSS (``VmHWM``) over the whole run.

Prints the figures and the ratio steady(last) / steady(round 1) (goal <= 1.5).

    .venv/bin/python bench/memory.py [--rounds 10] [--env MALLOC_ARENA_MAX=2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

BIN = Path(sys.executable).parent
ARGS = {
    "prompt": "a lighthouse on a cliff at dusk",
    "width": 2048,
    "height": 2048,
    "num_images": 4,
    "inline": "full",
}
CONCURRENT = 4
IDLE_S = 1.0  # let the server finish background work before reading steady RSS


def status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def server_pid() -> int:
    """The one child process of this script: the server stdio_client spawned."""
    me = os.getpid()
    children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    [pid] = children
    return int(pid)


async def one_round(session: ClientSession) -> int:
    """Four concurrent calls; returns the inline bytes (base64) they carried."""
    sizes: list[int] = []

    async def call() -> None:
        result = await session.call_tool("generate_image", ARGS)
        assert not result.is_error, result.content
        sizes.append(sum(len(getattr(b, "data", "")) for b in result.content))

    async with anyio.create_task_group() as group:
        for _ in range(CONCURRENT):
            group.start_soon(call)
    return sum(sizes)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="extra NAME=VALUE for the server (e.g. MALLOC_ARENA_MAX=2)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "XDG_DATA_HOME": str(work)}
    env.update(item.split("=", 1) for item in args.env)
    params = StdioServerParameters(
        command=str(BIN / "mcp-imagegen"), args=["serve"], env=env
    )
    steady: list[int] = []
    with (work / "stderr.log").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            pid = server_pid()
            start = status_kb(pid, "VmRSS")
            inline = 0
            for _ in range(args.rounds):
                inline = await one_round(session)
                await anyio.sleep(IDLE_S)
                steady.append(status_kb(pid, "VmRSS"))
            peak = status_kb(pid, "VmHWM")

    extra = " ".join(args.env) or "none"
    print(
        f"{args.rounds} rounds x {CONCURRENT} concurrent generate_image "
        f"(2048x2048 x4, inline=full); extra env: {extra}"
    )
    print(f"inline data per round (base64): {inline / 1e6:.2f} MB")
    print(f"RSS after start-up:       {start / 1024:7.1f} MB")
    print(f"peak RSS (VmHWM):         {peak / 1024:7.1f} MB")
    print(f"steady RSS after round 1: {steady[0] / 1024:7.1f} MB")
    print(f"steady RSS after round {args.rounds}: {steady[-1] / 1024:6.1f} MB")
    print("steady per round (MB):", " ".join(f"{kb / 1024:.0f}" for kb in steady))
    print(f"ratio last/first: {steady[-1] / steady[0]:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    anyio.run(main)
