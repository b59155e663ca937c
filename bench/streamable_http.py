"""generate_image over streamable HTTP: mcp-imagegen vs a bare MCPServer.

Both servers run as subprocesses on loopback, measured in the same run:

- ours: ``mcp-imagegen serve --transport http`` in its default configuration
  (placeholder backend, file storage, stateless), except the concurrency limits
  ``[server] max_concurrent_generations`` / ``max_queued_generations`` (set by
  ``--slots`` / ``--queue``) so that the load phase's clients are not refused as busy;
- bare: bench/bare_http_server.py, bench/bare_server.py's tool drawing the same
  kind of placeholder image (``BARE_RENDER=1``) as the SDK's stateless streamable
  HTTP app under uvicorn.

Phase 1, latency: one session per server, ``--calls`` calls of generate_image at
512x512 rotating between the servers; medians and their ratio (goal <= 1.3).

Phase 2, load: ``--clients`` concurrent clients (one session each) x
``--per-client`` calls at 64x64 against one server at a time; errors (goal 0),
calls/s, p50/p99 latency, ratios to the bare server (reported: issue 10 bounds
only phase 1's ratio), and the server's RSS after the run (VmRSS and its peak
VmHWM from /proc/<pid>/status).

    .venv/bin/python bench/streamable_http.py [--calls 40] [--clients 64]
        [--per-client 20] [--slots 4] [--queue 64] [--no-chain]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PROMPT = "a lighthouse on a cliff at dusk"
#: Polls of /healthz (0.1 s apart) before a server counts as not starting.
STARTUP_POLLS = 300


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One server subprocess listening on loopback."""

    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used, all its threads."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM in KiB, from /proc/<pid>/status."""
        fields = {}
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])
        return fields

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(name: str, command: list[str], env: dict[str, str], log: Path) -> Server:
    """Start a server and wait for its /healthz (bounded)."""
    port = int(command[-1]) if name == "bare" else int(env["PORT"])
    with log.open("ab") as errlog:
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
        )
    server = Server(name, process, port)
    for _ in range(STARTUP_POLLS):
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}; see {log}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if response.status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise SystemExit(f"{name} never answered /healthz; see {log}")


@asynccontextmanager
async def session(url: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session over streamable HTTP."""
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300)) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write) as mcp,
    ):
        await mcp.initialize()
        yield mcp


def generate_args(size: int) -> dict[str, Any]:
    return {"prompt": PROMPT, "width": size, "height": size}


async def latency(servers: list[Server], calls: int) -> dict[str, float]:
    """Median seconds per 512x512 call, calls rotating between the servers."""
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    async with (
        session(servers[0].url) as first,
        session(servers[1].url) as second,
    ):
        clients = {servers[0].name: first, servers[1].name: second}
        for client in clients.values():  # warm-up: imports, caches, first image
            await client.call_tool("generate_image", generate_args(512))
        for _ in range(calls):
            for name, client in clients.items():
                started = time.perf_counter()
                result = await client.call_tool("generate_image", generate_args(512))
                times[name].append(time.perf_counter() - started)
                if result.is_error:
                    raise SystemExit(f"{name}: generate_image failed: {result.content}")
    return {name: statistics.median(values) for name, values in times.items()}


@dataclass
class LoadResult:
    """What one load run measured."""

    calls: int
    errors: list[str]
    seconds: float
    latencies: list[float]
    memory: dict[str, int]
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[p - 1]


async def load(server: Server, clients: int, per_client: int) -> LoadResult:
    """``clients`` concurrent sessions, each making ``per_client`` 64x64 calls."""
    latencies: list[float] = []
    errors: list[str] = []

    async def one_client() -> None:
        try:
            async with session(server.url) as mcp:
                for _ in range(per_client):
                    started = time.perf_counter()
                    result = await mcp.call_tool("generate_image", generate_args(64))
                    latencies.append(time.perf_counter() - started)
                    if result.is_error:
                        errors.append(str(result.content)[:200])
        except Exception as exc:  # counted, not fatal: the run reports every error
            errors.append(repr(exc)[:200])

    # CPU time is counted as well as wall time: on a shared machine it does not
    # depend on what other processes run (the clients share this process).
    server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(clients):
            group.start_soon(one_client)
    seconds = time.perf_counter() - started
    return LoadResult(
        len(latencies),
        errors,
        seconds,
        latencies,
        server.memory(),
        server.cpu_seconds() - server_cpu,
        time.process_time() - client_cpu,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--per-client", type=int, default=20)
    parser.add_argument(
        "--slots", type=int, default=4, help="max_concurrent_generations"
    )
    parser.add_argument("--queue", type=int, default=64, help="max_queued_generations")
    parser.add_argument(
        "--no-chain",
        action="store_true",
        help="run mcp-imagegen with generation.postprocess = [] (no recipe embedding)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "XDG_DATA_HOME": str(work)}
    # A/B runs point PYTHONPATH at an exported tree (docs/performance.md).
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    ours_port, bare_port = free_port(), free_port()
    config = work / "config.toml"
    config.write_text(
        f"[server]\nmax_concurrent_generations = {args.slots}\n"
        f"max_queued_generations = {args.queue}\n"
        f"[server.http]\nport = {ours_port}\n"
        + ("[generation]\npostprocess = []\n" if args.no_chain else ""),
        encoding="utf-8",
    )
    log = work / "stderr.log"
    ours = start(
        "mcp-imagegen",
        [
            str(BIN / "mcp-imagegen"),
            "serve",
            "--config",
            str(config),
            "--transport",
            "http",
        ],
        {**env, "PORT": str(ours_port)},
        log,
    )
    try:
        bare = start(
            "bare",
            [sys.executable, str(HERE / "bare_http_server.py"), str(bare_port)],
            {**env, "BARE_RENDER": "1"},
            log,
        )
        try:
            medians = await latency([ours, bare], args.calls)
            # Bare first, then ours: each load run has the machine to itself.
            loads = {
                s.name: await load(s, args.clients, args.per_client)
                for s in (bare, ours)
            }
        finally:
            bare.stop()
    finally:
        ours.stop()

    ours_ms, bare_ms = (medians[n] * 1000 for n in ("mcp-imagegen", "bare"))
    chain = "none" if args.no_chain else "default (metadata)"
    print(
        f"1) generate_image 512x512 over streamable HTTP, {args.calls} calls each, "
        f"mcp-imagegen's chain: {chain}"
    )
    print(f"   mcp-imagegen median: {ours_ms:7.2f} ms")
    print(f"   bare MCPServer median: {bare_ms:7.2f} ms")
    print(f"   ratio: {ours_ms / bare_ms:.2f} (goal <= 1.3)")
    print(
        f"2) {args.clients} clients x {args.per_client} calls at 64x64 "
        f"(max_concurrent_generations={args.slots}, "
        f"max_queued_generations={args.queue})"
    )
    for name, result in loads.items():
        print(
            f"   {name:13s} calls: {result.calls}, errors: {len(result.errors)}, "
            f"{result.rate:6.1f} calls/s, p50 {result.percentile(50) * 1000:6.1f} ms, "
            f"p99 {result.percentile(99) * 1000:6.1f} ms, "
            f"RSS after {result.memory['VmRSS'] / 1024:.0f} MiB "
            f"(peak {result.memory['VmHWM'] / 1024:.0f} MiB), CPU per call: "
            f"server {result.server_cpu * 1000 / result.calls:.2f} ms, "
            f"clients {result.client_cpu * 1000 / result.calls:.2f} ms"
        )
        for error in result.errors[:5]:
            print(f"      error: {error}")
    o, b = loads["mcp-imagegen"], loads["bare"]
    print(
        f"   ratios to bare: time per call {b.rate / o.rate:.2f}, "
        f"p50 {o.percentile(50) / b.percentile(50):.2f}, "
        f"p99 {o.percentile(99) / b.percentile(99):.2f}; "
        f"server CPU per call {o.server_cpu / o.calls / (b.server_cpu / b.calls):.2f}"
    )
    if o.errors or b.errors:
        raise SystemExit("errors under load (goal: zero)")


if __name__ == "__main__":
    anyio.run(main)
