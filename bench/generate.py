"""Per-call latency of generate_image (512x512) over stdio vs bare MCPServers.

Baselines, both bare MCPServer tools over stdio (bench/bare_server.py):

- "same PNG": returns the same PNG bytes as ImageContent (protocol + payload only);
  this is the issue's baseline (goal: ratio <= 1.5).
- "draws": draws the same kind of placeholder image and returns it (the floor for
  producing the image); the ratio to it is mcp-imagegen's own overhead: validation,
  concurrency slot, atomic fsynced storage, metadata, preview, structured content.

mcp-imagegen runs its default configuration (placeholder backend, file storage).
Calls rotate between the three servers. Prints medians and ratios.

    .venv/bin/python bench/generate.py [--calls 40] [--no-chain]
"""

from __future__ import annotations

import argparse
import os
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
ARGS = {"prompt": "a lighthouse on a cliff at dusk", "width": 512, "height": 512}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument(
        "--no-chain",
        action="store_true",
        help="run mcp-imagegen with generation.postprocess = [] (no recipe embedding)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "XDG_DATA_HOME": str(work)}
    # A/B runs point PYTHONPATH at an exported tree (docs/performance.md).
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    # --no-chain used to change only the printed label; the server needs the setting.
    chain_env = {"MCP_IMAGEGEN_GENERATION__POSTPROCESS": "[]"} if args.no_chain else {}
    ours = StdioServerParameters(
        command=str(BIN / "mcp-imagegen"), args=["serve"], env={**env, **chain_env}
    )
    bare_script = str(HERE / "bare_server.py")
    times: dict[str, list[float]] = {"ours": [], "same": [], "draws": []}
    with (work / "stderr.log").open("w") as errlog:
        async with (
            stdio_client(ours, errlog=errlog) as (r1, w1),
            ClientSession(r1, w1) as session,
        ):
            await session.initialize()
            first = await session.call_tool("generate_image", ARGS)
            image_path = first.structured_content["images"][0]["path"]
            same = StdioServerParameters(
                command=sys.executable,
                args=[bare_script],
                env={**env, "BARE_IMAGE": image_path},
            )
            draws = StdioServerParameters(
                command=sys.executable,
                args=[bare_script],
                env={**env, "BARE_RENDER": "1"},
            )
            async with (
                stdio_client(same, errlog=errlog) as (r2, w2),
                ClientSession(r2, w2) as same_session,
                stdio_client(draws, errlog=errlog) as (r3, w3),
                ClientSession(r3, w3) as draws_session,
            ):
                clients = {
                    "ours": session,
                    "same": same_session,
                    "draws": draws_session,
                }
                for name in ("same", "draws"):
                    await clients[name].initialize()
                    await clients[name].call_tool("generate_image", ARGS)
                for _ in range(args.calls):
                    for name, client in clients.items():
                        started = time.perf_counter()
                        result = await client.call_tool("generate_image", ARGS)
                        times[name].append(time.perf_counter() - started)
                        assert not result.is_error, result.content
    ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
    chain = "none" if args.no_chain else "default (metadata)"
    print(f"calls each: {args.calls} (rotating), image 512x512 PNG, chain: {chain}")
    print(f"mcp-imagegen generate_image      median: {ms['ours']:7.2f} ms")
    print(f"bare MCPServer, same PNG bytes   median: {ms['same']:7.2f} ms")
    print(f"bare MCPServer, draws the image  median: {ms['draws']:7.2f} ms")
    print(f"ratio to same-PNG baseline: {ms['ours'] / ms['same']:.2f} (goal <= 1.5)")
    print(f"ratio to drawing baseline:  {ms['ours'] / ms['draws']:.2f} (own overhead)")


if __name__ == "__main__":
    anyio.run(main)
