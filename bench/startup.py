"""Start-up time: `mcp-imagegen serve` vs a bare MCPServer, to the initialize result.

Each run spawns the server over stdio and measures the time until the
``initialize`` result arrives. Runs alternate between the two servers so machine
noise hits both alike. Prints the medians and their ratio (goal: <= 1.5).

    .venv/bin/python bench/startup.py [--runs 15]

``--trees A B ...`` instead compares source trees (exported with ``git archive``;
``installed`` is the one the venv runs) against each other: every round runs
each tree's server once, in a shuffled order, and the medians of
``mcp-imagegen serve``'s time to initialize are printed per tree (no bare
server: its time, too, depends on the tree, which it imports the placeholder
from).

    .venv/bin/python bench/startup.py --trees installed /tmp/ab/pre [--runs 40]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


async def time_to_initialize(params: StdioServerParameters, errlog: Path) -> float:
    """Seconds from spawning the server to its initialize result."""
    with errlog.open("a") as err:
        started = time.perf_counter()
        async with stdio_client(params, errlog=err) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                elapsed = time.perf_counter() - started
    return elapsed


def tree_servers(trees: list[str], work: Path) -> dict[str, StdioServerParameters]:
    """``mcp-imagegen serve`` running each tree (``installed``: the venv's own)."""
    base = {"PATH": os.environ["PATH"], "HOME": str(work), "XDG_DATA_HOME": str(work)}
    params = {}
    for tree in trees:
        env = dict(base)
        if tree != "installed":
            root = Path(tree).resolve()
            env["PYTHONPATH"] = f"{root / 'core'}:{root / 'plugins'}"
        params[tree] = StdioServerParameters(
            command=str(BIN / "mcp-imagegen"), args=["serve"], env=env
        )
    return params


async def compare_trees(trees: list[str], runs: int, work: Path) -> None:
    """Median time to initialize per source tree, trees shuffled every round."""
    params = tree_servers(trees, work)
    errlog = work / "stderr.log"
    for tree in trees:  # warm-up: the same file-system cache for all
        await time_to_initialize(params[tree], errlog)
    times: dict[str, list[float]] = {tree: [] for tree in trees}
    order = list(trees)
    for _ in range(runs):
        random.shuffle(order)
        for tree in order:
            times[tree].append(await time_to_initialize(params[tree], errlog))
    print(f"rounds: {runs} (each tree once per round, shuffled)")
    for tree in trees:
        values = sorted(times[tree])
        print(
            f"{tree:30s} median {statistics.median(values) * 1000:7.1f} ms, "
            f"lower quartile {values[len(values) // 4] * 1000:7.1f} ms"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--trees", nargs="+", help="compare these source trees")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    if args.trees:
        await compare_trees(args.trees, args.runs, work)
        return
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "XDG_DATA_HOME": str(work)}
    # A/B runs point PYTHONPATH at an exported tree (docs/performance.md).
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    ours = StdioServerParameters(
        command=str(BIN / "mcp-imagegen"), args=["serve"], env=env
    )
    bare = StdioServerParameters(
        command=sys.executable, args=[str(HERE / "bare_server.py")], env=env
    )
    errlog = work / "stderr.log"
    # One warm-up each, so both start with the same file-system cache.
    await time_to_initialize(ours, errlog)
    await time_to_initialize(bare, errlog)
    times: dict[str, list[float]] = {"mcp-imagegen": [], "bare": []}
    for _ in range(args.runs):
        times["mcp-imagegen"].append(await time_to_initialize(ours, errlog))
        times["bare"].append(await time_to_initialize(bare, errlog))
    ours_ms = statistics.median(times["mcp-imagegen"]) * 1000
    bare_ms = statistics.median(times["bare"]) * 1000
    print(f"runs each: {args.runs} (alternating)")
    print(f"mcp-imagegen serve  median time to initialize: {ours_ms:7.1f} ms")
    print(f"bare MCPServer      median time to initialize: {bare_ms:7.1f} ms")
    print(f"ratio: {ours_ms / bare_ms:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    anyio.run(main)
