"""Where one in-memory ``generate_image`` call spends its time (cProfile).

Runs the default configuration (placeholder backend, metadata chain, file storage
in a scratch folder) behind an in-memory ``mcp.Client`` and profiles a loop of
512x512 calls. cProfile sees only the thread it runs in, so for the profile
``anyio.to_thread.run_sync`` runs its function inline on the event loop: the
drawing, encoding, metadata and hashing done in worker threads then show up too.
aiofiles' file I/O still runs in its executor (its time is the loop's wait).

Prints the top functions by own time and by cumulative time, in ms per call.

    .venv/bin/python bench/profile_generate.py [--calls 200] [--top 25] [--size 512]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
from mcp import Client

ARGS = {"prompt": "a lighthouse on a cliff at dusk", "width": 512, "height": 512}


async def _inline(func: Callable[..., Any], *args: Any, **_: Any) -> Any:
    return func(*args)


def _print_top(stats: pstats.Stats, key: str, calls: int, top: int) -> None:
    rows = []
    for (path, line, name), (_, ncalls, own, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((own if key == "own" else cum, ncalls, own, cum, path, line, name))
    rows.sort(reverse=True)
    print(f"\ntop {top} by {key} time, ms per generate_image call")
    print(f"{'own':>7} {'cum':>7} {'calls':>6}  function")
    for _, ncalls, own, cum, path, line, name in rows[:top]:
        where = "/".join(path.split("/")[-2:])
        print(
            f"{own * 1000 / calls:7.3f} {cum * 1000 / calls:7.3f} "
            f"{ncalls / calls:6.1f}  {name} ({where}:{line})"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--size", type=int, default=512, help="width and height (64: the load case)"
    )
    args = parser.parse_args()
    call_args = {**ARGS, "width": args.size, "height": args.size}
    work = tempfile.mkdtemp(prefix="profile-generate-")
    # The default configuration, logging included (JSON to stderr, as in serve).
    os.environ.update(HOME=work, XDG_DATA_HOME=work)

    from mcp_imagegen._app import create_server
    from mcp_imagegen._config import load_settings

    server = create_server(load_settings(search=False))
    anyio.to_thread.run_sync = _inline  # type: ignore[assignment]
    profile = cProfile.Profile()
    async with Client(server) as client:
        for _ in range(5):  # warm up: caches, fonts, first-call imports
            await client.call_tool("generate_image", call_args)
        profile.enable()
        for _ in range(args.calls):
            result = await client.call_tool("generate_image", call_args)
            assert not result.is_error, result.content
        profile.disable()
    stats = pstats.Stats(profile)
    per_call = stats.total_tt * 1000 / args.calls  # type: ignore[attr-defined]
    print(f"calls: {args.calls}, profiled time per call: {per_call:.2f} ms")
    _print_top(stats, "own", args.calls, args.top)
    _print_top(stats, "cum", args.calls, args.top)


if __name__ == "__main__":
    anyio.run(main)
