"""What the Prometheus metrics of ``serve --transport http`` cost per tool call.

Two servers from the composition root, served to in-memory MCP clients: one built
for HTTP (the tool-call middleware and the service observer; ``[server.auth]``
off, so that is all it adds) and the stdio build without metrics (the baseline,
measured in the same run). Calls alternate between the two in rounds, so drift
of a shared machine hits both alike:

- ``list_backends`` (the cheapest tool: the metrics' share is largest);
- ``generate_image`` 64² on the placeholder, 1 step (a backend request and an
  image stored are observed too).

Prints the median per call of each and the ratio (metrics / baseline), then one
``GET /metrics`` rendering after the run.

    .venv/bin/python bench/metrics.py [--calls 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import anyio
from mcp import Client

from mcp_imagegen._app import create_server
from mcp_imagegen._config import LoggingSettings, settings_from_dict
from mcp_imagegen._http.metrics import metrics_of
from mcp_imagegen._logs import configure_logging
from mcp_imagegen._mcp import ImageGenServer

CALLS: dict[str, dict[str, Any]] = {
    "list_backends": {},
    "generate_image": {"prompt": "a bench", "width": 64, "height": 64, "steps": 1},
}


async def time_calls(client: Client, tool: str, calls: int) -> list[float]:
    """Seconds per call of ``calls`` sequential calls of ``tool``."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await client.call_tool(tool, CALLS[tool])
        times.append(time.perf_counter() - started)
        assert not result.is_error, result.content
    return times


async def main(calls: int, rounds: int) -> None:
    """Run the comparison and print the table."""
    configure_logging(LoggingSettings(level="warning"))
    with tempfile.TemporaryDirectory() as directory:
        settings = settings_from_dict({"storage": {"file": {"directory": directory}}})
        servers: dict[str, ImageGenServer] = {
            "baseline": create_server(settings),
            "metrics": create_server(settings, http=True),
        }
        per_call: dict[tuple[str, str], list[float]] = {}
        async with (
            Client(servers["baseline"]) as baseline,
            Client(servers["metrics"]) as metered,
        ):
            clients = {"baseline": baseline, "metrics": metered}
            for tool in CALLS:  # warm-up: imports, first saves
                for client in clients.values():
                    await time_calls(client, tool, 5)
            for _ in range(rounds):
                for tool in CALLS:
                    for name, client in clients.items():
                        times = await time_calls(client, tool, calls)
                        per_call.setdefault((tool, name), []).extend(times)
        metrics = metrics_of(servers["metrics"].service)
        assert metrics is not None
        started = time.perf_counter()
        text = metrics.exposition()
        render_ms = (time.perf_counter() - started) * 1000

    print(f"{calls} calls x {rounds} rounds per tool and server, median per call")
    print("| tool | without metrics | with metrics | ratio |")
    print("| --- | --- | --- | --- |")
    for tool in CALLS:
        base = statistics.median(per_call[(tool, "baseline")]) * 1000
        with_metrics = statistics.median(per_call[(tool, "metrics")]) * 1000
        print(
            f"| {tool} | {base:.3f} ms | {with_metrics:.3f} ms | "
            f"{with_metrics / base:.3f} |"
        )
    print(f"GET /metrics rendering: {render_ms:.2f} ms, {len(text)} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.calls, args.rounds)
