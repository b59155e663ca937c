"""Where one generate_image call's time goes, stage by stage, without a profiler.

bench/profile_generate.py (cProfile) charges every Python call it sees, which
inflates small Python helpers many times over (a PNG header read: 10 us, 0.13 ms
under cProfile), so its figures rank work but do not price it. This script
prices it: it wraps the stages of a call (the SDK's tool call, the background-job
fallback, the pipeline, the backend, finishing, saving, the result) in
``perf_counter`` timers, runs the default configuration (placeholder backend,
metadata chain, file storage in a scratch folder) behind an in-memory
``mcp.Client`` with its real worker threads, and in the same process, in
alternating rounds, bench/bare_server.py's tool drawing the same image
(``BARE_RENDER=1``). Prints mean ms per call of each stage and of what lies
between them.

``--no-fsync`` makes ``os.fsync`` a no-op in this process (measurement only: the
saves are then not durable), to price the file storage's durability.

    .venv/bin/python bench/stages.py [--size 512] [--calls 40] [--rounds 5]
        [--no-fsync]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))
PROMPT = "a lighthouse on a cliff at dusk"
#: Seconds spent in each timed stage, by stage name.
SPENT: dict[str, float] = defaultdict(float)


def timed(owner: Any, attribute: str, stage: str) -> None:
    """Replace the coroutine function ``owner.attribute`` with a timed one."""
    original: Callable[..., Any] | None = getattr(owner, attribute, None)
    if original is None:
        raise SystemExit(f"bench/stages.py: {owner!r} has no {attribute} any more")
    # Bound to a local: the wrapper must not see the rebound name.
    inner: Callable[..., Any] = original

    @functools.wraps(inner)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return await inner(*args, **kwargs)
        finally:
            SPENT[stage] += time.perf_counter() - begun

    setattr(owner, attribute, wrapper)


def instrument(server: Any) -> None:
    """Time the stages of a generate_image call on ``server`` (ours).

    The SDK's tool call is timed on ``server``'s own class, which the bare
    server does not share; the rest is mcp-imagegen's code.
    """
    from mcp_imagegen._mcp import generation
    from mcp_imagegen._service import finishing, pipeline, saving

    timed(type(server), "call_tool", "sdk tool call")
    timed(generation.Background, "call", "background job")
    timed(pipeline.Pipeline, "generate", "pipeline")
    timed(pipeline.Pipeline, "_run_backend", "backend")
    timed(finishing.Finisher, "finish", "finishing")
    timed(saving.Saver, "save_all", "saving")
    timed(generation, "images_result", "result")


async def rounds(
    servers: dict[str, Any], size: int, calls: int, count: int
) -> dict[str, list[float]]:
    """Per-call seconds of each server, ``count`` alternating rounds of ``calls``."""
    arguments = {"prompt": PROMPT, "width": size, "height": size}
    seconds: dict[str, list[float]] = {name: [] for name in servers}
    async with Client(servers["ours"]) as ours, Client(servers["bare"]) as bare:
        clients = {"ours": ours, "bare": bare}
        for client in clients.values():  # warm up: fonts, caches, first imports
            for _ in range(5):
                await client.call_tool("generate_image", arguments)
        SPENT.clear()
        for _ in range(count):
            for name, client in clients.items():
                for _ in range(calls):
                    begun = time.perf_counter()
                    result = await client.call_tool("generate_image", arguments)
                    seconds[name].append(time.perf_counter() - begun)
                    assert not result.is_error, result.content
    return seconds


def report(seconds: dict[str, list[float]], size: int, no_fsync: bool) -> None:
    """Print the stages (mean ms per call) and the whole calls."""
    calls = len(seconds["ours"])
    ms = {stage: spent * 1000 / calls for stage, spent in SPENT.items()}
    whole = statistics.fmean(seconds["ours"]) * 1000
    bare = statistics.fmean(seconds["bare"]) * 1000
    rows = [
        ("whole call (client to client)", whole),
        ("  SDK and client around the tool", whole - ms["sdk tool call"]),
        ("  SDK tool call", ms["sdk tool call"]),
        ("    argument handling, style", ms["sdk tool call"] - ms["background job"]),
        ("    background job", ms["background job"]),
        (
            "      job machinery (task, wait)",
            ms["background job"] - ms["pipeline"] - ms["result"],
        ),
        ("      pipeline", ms["pipeline"]),
        ("        backend (in its slot)", ms["backend"]),
        ("        finishing (chain, hash)", ms["finishing"]),
        ("        saving (durable)", ms["saving"]),
        (
            "        validation, records, rest",
            ms["pipeline"] - ms["backend"] - ms["finishing"] - ms["saving"],
        ),
        ("      result (preview, link, structure)", ms["result"]),
    ]
    fsync = "os.fsync a no-op (not durable)" if no_fsync else "durable saves"
    print(f"generate_image {size}x{size}, {calls} calls each, {fsync}")
    print(f"{'mean ms per call':>48}")
    for label, value in rows:
        print(f"{label:40s} {value:7.2f}")
    print(f"{'bare MCPServer, draws the image':40s} {bare:7.2f}")
    print(f"ratio of the means: {whole / bare:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--calls", type=int, default=40, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-fsync", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-stages-")
    # The default configuration, logging included (JSON to stderr, as in serve).
    os.environ.update(HOME=work, XDG_DATA_HOME=work, BARE_RENDER="1")
    if args.no_fsync:
        os.fsync = lambda fd: None

    from bare_server import server as bare

    from mcp_imagegen._app import create_server
    from mcp_imagegen._config import load_settings

    ours = create_server(load_settings(search=False))
    instrument(ours)
    servers = {"ours": ours, "bare": bare}
    seconds = anyio.run(rounds, servers, args.size, args.calls, args.rounds)
    report(seconds, args.size, args.no_fsync)


if __name__ == "__main__":
    main()
