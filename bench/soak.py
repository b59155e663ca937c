"""Soak, fault and fuzz runs in full (the suite runs them bounded, in tests/soak).

Scenarios, each over a real MCP client (``mcp.Client``):

- ``mixed``: placeholder backend + file storage; generate/list/get/delete/transform
  concurrently for ``--calls`` calls, against ``mcp-imagegen serve`` over stdio
  (``--transport stdio``, the default) or an in-memory server.

Other scenarios run the server in memory (``mcp.Client(server)``):

- ``kserve-faults``: the real KServe test model server behind a loopback fault
  proxy injecting 500s (the server's own), 503s, dropped connections, garbage
  bodies and slow answers; requests whose fault is transient must succeed.
- ``s3-outage``: a real SeaweedFS killed (SIGKILL) after a third of the calls and
  restarted a sixth later.
- ``fuzz``: tool arguments over MCP, configuration files and environment values,
  and KServe V1/V2 bodies, ``--fuzz-examples`` each.

Every acknowledged image is tracked; at the end each survivor must be listed,
loadable and byte-identical (sha256 of the record, and of the bytes returned when
the call returned them). Errors are counted by message class; "internal error",
tracebacks, calls that raise, list_images failing under deletes and lost images
are invariant breaks. Prints a summary with RSS at start and end; exits 1 when
an invariant broke.

    .venv/bin/python bench/soak.py --calls 10000 --concurrency 8 --scenario all
    .venv/bin/python bench/soak.py --scenario mixed --transport memory --calls 2000
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the scenarios live in the test package

import anyio  # noqa: E402
import httpx  # noqa: E402
import mcp  # noqa: E402
from mcp import StdioServerParameters  # noqa: E402

from mcp_imagegen._app import create_server  # noqa: E402
from mcp_imagegen._config import settings_from_dict  # noqa: E402
from tests.kserve.support import free_port  # noqa: E402
from tests.soak.faultproxy import FaultProxy  # noqa: E402
from tests.soak.workload import Ledger, Workload, verify  # noqa: E402

SCENARIOS = ("mixed", "kserve-faults", "s3-outage", "fuzz")
QUIET = {"logging": {"level": "warning"}}


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process (this one holds an in-memory server too)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_child() -> int:
    """The pid of the ``mcp-imagegen serve`` child this process started."""
    me = os.getpid()
    children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    for pid in children:
        if b"mcp-imagegen" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return int(pid)
    raise RuntimeError("no mcp-imagegen child process found")


def report(name: str, ledger: Ledger, started: float, rss: tuple[float, float]) -> bool:
    """Print one scenario's summary; return whether every invariant held."""
    summary = ledger.summary()
    ok = not ledger.unexpected and not ledger.lost
    print(f"\n== {name}: {'OK' if ok else 'INVARIANT BROKEN'}")
    print(f"   calls: {sum(ledger.calls.values())} {dict(ledger.calls)}")
    print(
        f"   acknowledged images: {ledger.acknowledged}, deleted: "
        f"{len(ledger.deleted)}, verified at the end: {len(ledger.live)}, "
        f"lost: {len(ledger.lost)}"
    )
    print(f"   errors by class ({sum(ledger.errors.values())}):")
    for kind, count in ledger.errors.most_common(12):
        print(f"     {count:6d}  {kind}")
    kinds = collections.Counter(line.split(":")[0] for line in ledger.unexpected)
    print(f"   unexpected: {summary['unexpected_count']} {dict(kinds)}")
    for line in ledger.unexpected[:8]:
        print(f"     - {line}")
    for line in ledger.lost[:8]:
        print(f"     - lost: {line}")
    print(
        f"   RSS start {rss[0]:.0f} MB, end {rss[1]:.0f} MB "
        f"({rss[1] / rss[0]:.2f}x); {time.monotonic() - started:.1f} s"
    )
    return ok


# -- mixed ------------------------------------------------------------------------


async def mixed(calls: int, concurrency: int, seed: int, transport: str) -> bool:
    """Placeholder backend, file storage, a mixed concurrent workload.

    ``transport`` "stdio" runs the real ``mcp-imagegen serve`` as a child process
    (RSS is then the child's); "memory" runs the server in this process.
    """
    started = time.monotonic()
    ledger = Ledger(strict=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        if transport == "stdio":
            target: Any = StdioServerParameters(
                command=str(Path(sys.executable).with_name("mcp-imagegen")),
                args=["serve"],
                env={
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "HOME": directory,
                    "MCP_IMAGEGEN_STORAGE__FILE__DIRECTORY": directory,
                    "MCP_IMAGEGEN_LOGGING__LEVEL": "warning",
                },
            )
        else:
            target = create_server(
                settings_from_dict(
                    {**QUIET, "storage": {"file": {"directory": directory}}}
                )
            )
        async with mcp.Client(target) as client:
            pid: int | str = server_child() if transport == "stdio" else "self"
            rss_start = rss_mb(pid)
            await Workload(client, ledger, seed=seed).run(calls, concurrency)
            await verify(client, ledger)
            rss_end = rss_mb(pid)
        leftovers = await anyio.to_thread.run_sync(count_leftovers, Path(directory))
        print(f"\n   leftovers in the image directory: {leftovers}")
    return report(f"mixed ({transport})", ledger, started, (rss_start, rss_end))


def count_leftovers(directory: Path) -> int:
    """Temporary files and image files whose record is missing."""

    def leftover(path: Path) -> bool:
        if path.name.startswith(".tmp"):
            return True
        image = path.suffix in (".png", ".jpg", ".jpeg", ".webp", ".gif")
        return image and not path.with_suffix(".json").exists()

    return sum(1 for path in directory.rglob("*") if leftover(path))


# -- KServe faults ----------------------------------------------------------------

#: (prompt tag, must succeed, weight). "*1": only the first attempt fails.
FAULT_MIX = [
    ("", True, 62),
    ("fault=500", False, 8),
    ("fault=503*1", True, 6),
    ("fault=503", False, 4),
    ("fault=drop*1", False, 6),
    ("fault=drop", False, 3),
    ("fault=garbage", False, 5),
    ("fault=slow", True, 6),
]


def fault_tag(_: int, rng: random.Random) -> tuple[str, bool]:
    tags = [(tag, must) for tag, must, _ in FAULT_MIX]
    [choice] = rng.choices(tags, [weight for *_, weight in FAULT_MIX])
    return choice


@contextlib.contextmanager
def kserve_predictor() -> Iterator[int]:
    """Start the suite's KServe test model server; yield its port."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="kserve-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.kserve.predictor"),
            *("--http_port", str(port), "--enable_grpc", "false"),
            *("--enable_latency_logging", "false"),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"the KServe server exited; see {log.name}")
            with contextlib.suppress(httpx.TransportError):
                url = f"http://127.0.0.1:{port}/v2/models/sd-v1/ready"
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"the KServe server was not ready; see {log.name}")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.unlink(log.name)


async def kserve_faults(calls: int, concurrency: int, seed: int, port: int) -> bool:
    """KServe backend through the fault proxy; transient faults must be absorbed."""
    started = time.monotonic()
    ledger = Ledger(strict=False)
    with tempfile.TemporaryDirectory(prefix="soak-") as directory:
        async with FaultProxy("127.0.0.1", port) as proxy:
            settings = settings_from_dict(
                {
                    **QUIET,
                    "storage": {"file": {"directory": directory}},
                    "generation": {"backend": "flaky"},
                    "backends": {
                        "flaky": {
                            "type": "kserve",
                            "url": proxy.url,
                            "model": "sd-v1",
                            "max_retries": 2,
                            "retry_backoff": 0.02,
                            "retry_backoff_max": 0.1,
                        }
                    },
                }
            )
            async with mcp.Client(create_server(settings)) as client:
                rss_start = rss_mb()  # once the server and its components are up
                workload = Workload(client, ledger, seed=seed, prompt_tag=fault_tag)
                await workload.run(calls, concurrency)
                await verify(client, ledger)
            print(f"\n   proxy actions: {dict(proxy.actions)}")
    return report("kserve-faults", ledger, started, (rss_start, rss_mb()))


# -- S3 outage --------------------------------------------------------------------


async def s3_outage(calls: int, concurrency: int, seed: int) -> bool:
    """A mixed workload on S3 storage; SeaweedFS is SIGKILLed and restarted."""
    from tests.s3.seaweed import TEST_BUCKET, SeaweedServer

    started = time.monotonic()
    ledger = Ledger(strict=False)
    with tempfile.TemporaryDirectory(prefix="soak-s3-") as directory:
        seaweed = SeaweedServer(Path(directory), buckets=(TEST_BUCKET,))
        await anyio.to_thread.run_sync(seaweed.start)
        try:
            table = seaweed.storage_table(
                prefix=f"soak-{uuid.uuid4().hex[:8]}/",
                max_attempts=2,
                connect_timeout="PT2S",
            )
            settings = settings_from_dict(
                {**QUIET, "storage": {"backend": "s3", "s3": table}}
            )
            async with mcp.Client(create_server(settings)) as client:
                rss_start = rss_mb()  # once the S3 client (botocore) is loaded
                workload = Workload(client, ledger, seed=seed)
                await workload.run(calls // 3, concurrency)
                assert seaweed.process is not None
                os.killpg(seaweed.process.pid, signal.SIGKILL)
                await anyio.to_thread.run_sync(seaweed.stop)  # reap, remove sockets
                print(f"\n   SeaweedFS killed after {calls // 3} calls")
                ledger.phase = "[outage] "
                await workload.run(calls // 6, concurrency)
                await anyio.to_thread.run_sync(seaweed.start)
                print(f"   restarted after {calls // 6} calls during the outage")
                ledger.phase = ""
                await workload.run(calls - calls // 3 - calls // 6, concurrency)
                await verify(client, ledger, attempts=3)
            orphans = await anyio.to_thread.run_sync(
                s3_orphans, seaweed, table["prefix"]
            )
            print(f"   leftovers in the bucket (images without a record): {orphans}")
        finally:
            await anyio.to_thread.run_sync(seaweed.cleanup)
    return report("s3-outage", ledger, started, (rss_start, rss_mb()))


def s3_orphans(seaweed: Any, prefix: str) -> int:
    """Objects under ``prefix`` that are not records and have no record."""
    client = seaweed.client()
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=seaweed.storage_table()["bucket"], Prefix=prefix
    ):
        keys.update(item["Key"] for item in page.get("Contents", []))
    records = {key.rsplit(".", 1)[0] for key in keys if key.endswith(".json")}
    return sum(
        1
        for key in keys
        if not key.endswith(".json") and key.rsplit(".", 1)[0] not in records
    )


# -- fuzz -------------------------------------------------------------------------


def fuzz(examples: int) -> bool:
    """Tool arguments over MCP, configuration, KServe bodies: ``examples`` each."""
    from anyio.from_thread import start_blocking_portal
    from hypothesis import HealthCheck, given, settings

    from mcp_imagegen._app import build_service
    from mcp_imagegen._config import load_settings
    from mcp_imagegen.errors import ConfigurationError, PluginError
    from mcp_imagegen_kserve.responses import parse_v1_response, parse_v2_response
    from tests.soak.fuzzing import (
        ENVIRONMENTS,
        check_tool_answer,
        config_files,
        tool_arguments,
        v1_bodies,
        v2_bodies,
    )
    from tests.soak.test_kserve_body_fuzz import MAX_PIXELS, outcome
    from tests.soak.test_tool_fuzz import EDGE_CASES, SETTINGS, VALID

    started, rss_start = time.monotonic(), rss_mb()
    profile = settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    problems: collections.Counter[str] = collections.Counter()
    samples: list[str] = []
    counts: collections.Counter[str] = collections.Counter()

    def note(kind: str, problem: str | None) -> None:
        counts[kind] += 1
        if problem:
            problems[kind] += 1
            if len(samples) < 12:
                samples.append(f"{kind}: {problem[:240]}")

    with tempfile.TemporaryDirectory(prefix="soak-fuzz-") as directory:
        server = create_server(
            settings_from_dict(
                {**QUIET, **SETTINGS, "storage": {"file": {"directory": directory}}}
            )
        )
        with start_blocking_portal(backend="asyncio") as portal:
            with portal.wrap_async_context_manager(mcp.Client(server)) as client:

                def call(tool: str, arguments: dict[str, Any]) -> Any:
                    async def go() -> Any:
                        return await client.call_tool(tool, arguments)

                    try:
                        return portal.call(go)
                    except Exception as exc:
                        return exc

                tools = portal.call(client.list_tools).tools
                made = call("generate_image", VALID["generate_image"])
                image_id = made.structured_content["images"][0]["id"]

                def checker(name: str) -> Any:
                    def check(arguments: dict[str, Any]) -> None:
                        arguments = {
                            k: image_id if v == "<id>" else v
                            for k, v in arguments.items()
                        }
                        answer = call(name, arguments)
                        note(f"tool {name}", check_tool_answer(name, arguments, answer))

                    return check

                for tool in tools:
                    names = sorted(tool.input_schema.get("properties", {}))
                    check = checker(tool.name)
                    for arguments in EDGE_CASES.get(tool.name, []):
                        check(arguments)
                    base = VALID.get(tool.name)
                    given(arguments=tool_arguments(names, base))(profile(check))()
                alive = call("list_backends", {})
                dead = isinstance(alive, Exception) or alive.is_error
                note("server alive after fuzz", f"{alive!r:.200}" if dead else None)

    with tempfile.TemporaryDirectory(prefix="soak-cfg-") as directory:
        path = Path(directory) / "fuzz.toml"
        saved = {k: v for k, v in os.environ.items() if k.startswith("MCP_IMAGEGEN_")}
        for name in saved:
            del os.environ[name]

        def load(config: Path | None) -> str | None:
            try:
                build_service(load_settings(config))
            except (ConfigurationError, PluginError):
                return None
            except Exception as exc:
                return f"{type(exc).__name__}: {exc}"
            return None

        @profile
        @given(data=config_files())
        def config_file(data: bytes) -> None:
            path.write_bytes(data)
            note("config file", load(path))

        @profile
        @given(environment=ENVIRONMENTS)
        def config_env(environment: dict[str, str]) -> None:
            os.environ.update(environment)
            try:
                note("config env", load(None))
            finally:
                for name in environment:
                    del os.environ[name]

        cwd = os.getcwd()
        os.chdir(directory)  # no ./mcp-imagegen.toml of the caller's
        try:
            config_file()
            config_env()
        finally:
            os.chdir(cwd)
            os.environ.update(saved)

    @profile
    @given(answer=v1_bodies())
    def v1(answer: tuple[bytes, str | None]) -> None:
        body, kind = answer
        note(
            "kserve v1 body",
            outcome(
                lambda: parse_v1_response(
                    body, content_type=kind, max_pixels=MAX_PIXELS
                )
            ),
        )

    @profile
    @given(answer=v2_bodies())
    def v2(answer: tuple[bytes, dict[str, str]]) -> None:
        body, headers = answer
        note(
            "kserve v2 body",
            outcome(
                lambda: parse_v2_response(body, headers=headers, max_pixels=MAX_PIXELS)
            ),
        )

    v1()
    v2()

    ok = not problems
    print(f"\n== fuzz: {'OK' if ok else 'INVARIANT BROKEN'}")
    for kind, count in sorted(counts.items()):
        print(f"   {kind:32s} {count:6d} cases, {problems[kind]:5d} broken")
    for line in samples:
        print(f"     - {line}")
    rss_end = rss_mb()
    print(
        f"   RSS start {rss_start:.0f} MB, end {rss_end:.0f} MB; "
        f"{time.monotonic() - started:.1f} s"
    )
    return ok


# -- main -------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scenario", choices=("all", *SCENARIOS), default="all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--transport",
        choices=("memory", "stdio"),
        default="stdio",
        help="How the mixed scenario reaches the server (others run in memory).",
    )
    parser.add_argument(
        "--fuzz-examples", type=int, default=500, help="Examples per fuzz target."
    )
    args = parser.parse_args()
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    print(
        f"soak: scenarios {', '.join(chosen)}; {args.calls} calls, concurrency "
        f"{args.concurrency}, seed {args.seed}"
    )
    results: dict[str, bool] = {}
    for name in chosen:
        if name == "mixed":
            results[name] = anyio.run(
                mixed, args.calls, args.concurrency, args.seed, args.transport
            )
        elif name == "kserve-faults":
            with kserve_predictor() as port:
                results[name] = anyio.run(
                    kserve_faults, args.calls, args.concurrency, args.seed, port
                )
        elif name == "s3-outage":
            results[name] = anyio.run(
                s3_outage, args.calls, args.concurrency, args.seed
            )
        else:
            results[name] = fuzz(args.fuzz_examples)
    print("\nsummary: " + json.dumps(results))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
