"""MCP tasks over HTTP: round-trip overhead, 200 concurrent tasks, waiting idle.

One ``mcp-imagegen serve --transport http`` subprocess on loopback (placeholder
backend, file storage, so task records go to the file task store as on a real
HTTP deployment; ``server.tasks.poll_interval`` 100 ms, its lowest):

1. Round trip: ``--calls`` calls of generate_image at 256x256 in three ways,
   rotating, medians and ratios to the synchronous call measured in the same run:
   synchronous ``tools/call``; a task polled as a client does (create,
   ``tasks/get`` every ``pollInterval`` until it ended, ``tasks/result``); a task
   fetched at once (create, ``tasks/result``, which blocks until the end).
2. Load: ``--tasks`` task-augmented calls at 64x64 created concurrently over
   ``--sessions`` sessions, then every ``tasks/result`` awaited concurrently: how
   many completed with their image, whether ``tasks/list`` has them all, wall
   time, and the server's RSS after (VmRSS, peak VmHWM).
3. Waiting: the server's CPU time (utime + stime from /proc) while a 5 s task
   runs, with nobody waiting, then with 1 and with 50 ``tasks/result`` requests
   blocked on it. ``tasks/result`` on the task's own server waits on an event:
   the waiters add next to nothing; a loop of store reads would add a core.

    .venv/bin/python bench/tasks.py [--calls 30] [--tasks 200] [--sessions 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    CreateTaskResult,
    GetTaskPayloadRequest,
    GetTaskPayloadRequestParams,
    GetTaskRequest,
    GetTaskRequestParams,
    GetTaskResult,
    ListTasksRequest,
    ListTasksResult,
    PaginatedRequestParams,
    TaskMetadata,
)
from streamable_http import BIN, Server, free_port, session, start

PROMPT = "a lighthouse on a cliff at dusk"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def args_of(size: int, **more: Any) -> dict[str, Any]:
    return {"prompt": PROMPT, "width": size, "height": size, **more}


async def create(mcp: ClientSession, arguments: dict[str, Any]) -> CreateTaskResult:
    """A task-augmented tools/call (2025-11-25).

    The SDK's client checks every tools/call answer against CallToolResult (it
    has no task support), so this goes out through its dispatcher: same framing.
    """
    params = CallToolRequestParams(
        name="generate_image", arguments=arguments, task=TaskMetadata(ttl=600_000)
    ).model_dump(by_alias=True, mode="json", exclude_none=True)
    raw = await mcp._dispatcher.send_raw_request("tools/call", params, {})
    return CreateTaskResult.model_validate(raw)


async def get(mcp: ClientSession, task_id: str) -> GetTaskResult:
    return await mcp.send_request(
        GetTaskRequest(params=GetTaskRequestParams(task_id=task_id)), GetTaskResult
    )


async def result(mcp: ClientSession, task_id: str) -> CallToolResult:
    return await mcp.send_request(
        GetTaskPayloadRequest(params=GetTaskPayloadRequestParams(task_id=task_id)),
        CallToolResult,
    )


async def listed(mcp: ClientSession) -> set[str]:
    """Every task id tasks/list pages through."""
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        request = ListTasksRequest(
            params=PaginatedRequestParams(cursor=cursor) if cursor else None
        )
        page = await mcp.send_request(request, ListTasksResult)
        ids.update(t.task_id for t in page.tasks)
        cursor = page.next_cursor
        if not cursor:
            return ids


def check(answer: CallToolResult, what: str) -> None:
    if answer.is_error or not (answer.structured_content or {}).get("images"):
        raise SystemExit(f"{what} failed: {answer.content}")


async def round_trips(server: Server, calls: int) -> dict[str, float]:
    """Median seconds per call of each kind, kinds rotating."""

    async def synchronous(mcp: ClientSession) -> None:
        check(await mcp.call_tool("generate_image", args_of(256)), "tools/call")

    async def polled(mcp: ClientSession) -> None:
        task = (await create(mcp, args_of(256))).task
        while task.status == "working":
            await anyio.sleep((task.poll_interval or 1000) / 1000)
            task = await get(mcp, task.task_id)
        check(await result(mcp, task.task_id), "polled task")

    async def fetched(mcp: ClientSession) -> None:
        task = (await create(mcp, args_of(256))).task
        check(await result(mcp, task.task_id), "fetched task")

    kinds: dict[str, Callable[[ClientSession], Awaitable[None]]] = {
        "synchronous": synchronous,
        "polled": polled,
        "fetched": fetched,
    }
    times: dict[str, list[float]] = {name: [] for name in kinds}
    async with session(server.url) as mcp:
        for run in kinds.values():  # warm-up
            await run(mcp)
        for _ in range(calls):
            for name, run in kinds.items():
                started = time.perf_counter()
                await run(mcp)
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


async def many(server: Server, count: int, sessions: int) -> dict[str, Any]:
    """``count`` tasks at once: created, then all awaited."""
    created: list[str] = []
    done: list[str] = []
    errors: list[str] = []

    async def one_session(share: int) -> None:
        try:
            async with session(server.url) as mcp:
                mine: list[str] = []
                async with anyio.create_task_group() as group:

                    async def start_one() -> None:
                        task = await create(mcp, args_of(64))
                        mine.append(task.task.task_id)

                    for _ in range(share):
                        group.start_soon(start_one)
                created.extend(mine)
                async with anyio.create_task_group() as group:

                    async def finish(task_id: str) -> None:
                        answer = await result(mcp, task_id)
                        if answer.is_error:
                            errors.append(str(answer.content)[:200])
                        elif len((answer.structured_content or {})["images"]) == 1:
                            done.append(task_id)

                    for task_id in mine:
                        group.start_soon(finish, task_id)
        except Exception as exc:  # counted, not fatal: the run reports every error
            errors.append(repr(exc)[:200])

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for index in range(sessions):
            share = count // sessions + (1 if index < count % sessions else 0)
            group.start_soon(one_session, share)
    seconds = time.perf_counter() - started
    async with session(server.url) as mcp:
        in_list = await listed(mcp)
    return {
        "created": len(created),
        "completed": len(done),
        "listed": len(in_list & set(created)),
        "errors": errors,
        "seconds": seconds,
        "memory": server.memory(),
    }


def cpu_seconds(server: Server) -> float:
    """User + system CPU time of the server process so far."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1]
    utime, stime = (int(v) for v in fields.split()[11:13])
    return (utime + stime) / CLOCK_TICKS


async def waiting(server: Server) -> dict[int, float]:
    """CPU seconds the server spends while a 5 s task runs, by number of waiters."""
    spent: dict[int, float] = {}
    async with session(server.url) as mcp:
        for waiters in (0, 1, 50):
            # 50 steps of 100 ms (the placeholder's delay_ms in this run's config).
            task = (await create(mcp, args_of(64, steps=50))).task
            before = cpu_seconds(server)
            async with anyio.create_task_group() as group:
                for _ in range(waiters):
                    group.start_soon(result, mcp, task.task_id)
                # A client's own polling (twice a second), in every run alike:
                # the waiters are the only difference between the runs.
                while (await get(mcp, task.task_id)).status == "working":  # noqa: ASYNC110
                    await anyio.sleep(0.5)
            spent[waiters] = cpu_seconds(server) - before
    return spent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "XDG_DATA_HOME": str(work)}
    env.update({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    port, slow_port = free_port(), free_port()
    config = work / "config.toml"
    config.write_text(
        "[server.tasks]\npoll_interval = 0.1\n"
        f"max_queued = {max(args.tasks, 200)}\n"
        f"[server.http]\nport = {port}\n",
        encoding="utf-8",
    )
    command = [str(BIN / "mcp-imagegen"), "serve", "--config", str(config)]
    command += ["--transport", "http"]
    log = work / "stderr.log"
    server = start("mcp-imagegen", command, {**env, "PORT": str(port)}, log)
    try:
        medians = await round_trips(server, args.calls)
        load = await many(server, args.tasks, args.sessions)
    finally:
        server.stop()
    # A second server whose placeholder takes 100 ms per step, for the wait.
    slow = start(
        "mcp-imagegen",
        command,
        {
            **env,
            "PORT": str(slow_port),
            "MCP_IMAGEGEN_SERVER__HTTP__PORT": str(slow_port),
            "MCP_IMAGEGEN_BACKENDS__PLACEHOLDER__DELAY_MS": "100",
        },
        log,
    )
    try:
        spent = await waiting(slow)
    finally:
        slow.stop()

    sync_ms = medians["synchronous"] * 1000
    print(f"1) generate_image 256x256 over streamable HTTP, {args.calls} calls each")
    for name, label in (
        ("synchronous", "synchronous tools/call"),
        ("polled", "task: create, tasks/get every pollInterval (100 ms), result"),
        ("fetched", "task: create, tasks/result at once"),
    ):
        ms = medians[name] * 1000
        print(f"   {label:62s} {ms:7.2f} ms  ratio {ms / sync_ms:.2f}")
    memory = load["memory"]
    print(
        f"2) {args.tasks} tasks at 64x64 over {args.sessions} sessions at once: "
        f"created {load['created']}, completed {load['completed']}, in tasks/list "
        f"{load['listed']}, errors {len(load['errors'])}, {load['seconds']:.1f} s; "
        f"RSS after {memory['VmRSS'] / 1024:.0f} MiB "
        f"(peak {memory['VmHWM'] / 1024:.0f} MiB)"
    )
    for error in load["errors"][:5]:
        print(f"      error: {error}")
    print("3) server CPU while a 5 s task runs (50 steps x 100 ms)")
    for waiters, seconds in spent.items():
        print(f"   {waiters:2d} tasks/result waiting: {seconds * 1000:6.0f} ms CPU")
    if load["errors"] or load["completed"] != args.tasks:
        raise SystemExit("tasks lost or failed under load (goal: none)")


if __name__ == "__main__":
    anyio.run(main)
