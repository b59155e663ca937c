"""``mcp-imagegen serve`` as a real child process, driven by the SDK's stdio client."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import BlobResourceContents, CallToolResult, ResourceLink

from mcp_imagegen import __version__
from mcp_imagegen import _cli as cli
from tests.conftest import MCP_IMAGEGEN_BIN, image_size, stored_file

pytestmark = pytest.mark.anyio


async def test_serve_over_stdio_lists_tools_generates_with_progress_and_serves_links(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=str(MCP_IMAGEGEN_BIN),
        args=["serve"],
        env={**subprocess_env, "MCP_IMAGEGEN_LOGGING__FORMAT": "json"},
        cwd=str(tmp_path / "work"),
    )
    progress: list[tuple[float, float | None]] = []

    async def on_progress(
        done: float, total: float | None, message: str | None
    ) -> None:
        progress.append((done, total))

    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(60):
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            initialized = await session.initialize()
            tools = await session.list_tools()
            result: Any = await session.call_tool(
                "generate_image",
                {"prompt": "a lighthouse", "width": 320, "height": 192, "steps": 4},
                progress_callback=on_progress,
            )
            assert isinstance(result, CallToolResult)
            [link] = [b for b in result.content if isinstance(b, ResourceLink)]
            resource = await session.read_resource(str(link.uri))

    assert initialized.server_info.version == __version__
    assert {"generate_image", "list_images", "get_image"} <= {
        t.name for t in tools.tools
    }
    assert not result.is_error
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    [blob] = resource.contents
    assert isinstance(blob, BlobResourceContents)
    assert blob.mime_type == "image/png"
    data = base64.b64decode(blob.blob)
    assert image_size(data) == (320, 192)
    [image_id] = [image["id"] for image in result.structured_content["images"]]
    images = tmp_path / "data" / "mcp-imagegen" / "images"
    stored = stored_file(images, image_id, "png")
    assert stored.read_bytes() == data
    log = (tmp_path / "server.log").read_text()
    assert '"event": "image_generated"' in log


# -- process lifecycle: signals and vanished clients ---------------------------------


def _send(process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message).encode() + b"\n")
    process.stdin.flush()


def _read_message(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "the server closed stdout"
    message: dict[str, Any] = json.loads(line)
    return message


def _start_slow_generation(
    subprocess_env: dict[str, str], tmp_path: Path, errlog: IO[bytes]
) -> subprocess.Popen[bytes]:
    """Start ``serve``, initialize, and return once a slow call reports progress."""
    process = subprocess.Popen(
        [str(MCP_IMAGEGEN_BIN), "serve"],
        env={
            **subprocess_env,
            "MCP_IMAGEGEN_BACKENDS__PLACEHOLDER__DELAY_MS": "500",
            "MCP_IMAGEGEN_LOGGING__FORMAT": "json",
        },
        cwd=tmp_path / "work",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errlog,
    )
    _send(process, {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "0"},
        },
    })  # fmt: skip
    assert _read_message(process)["id"] == 1
    _send(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    _send(process, {
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {
            "name": "generate_image",
            "arguments": {"prompt": "slow", "width": 64, "height": 64, "steps": 50},
            "_meta": {"progressToken": "p"},
        },
    })  # fmt: skip
    for _ in range(20):
        if _read_message(process).get("method") == "notifications/progress":
            return process
    raise AssertionError("no progress notification")


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_serve_exits_on_a_signal_with_stdin_open_and_leaves_no_partial_files(
    signum: signal.Signals, code: int, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    with (tmp_path / "server.log").open("wb") as errlog:
        process = _start_slow_generation(subprocess_env, tmp_path, errlog)
        try:
            process.send_signal(signum)
            returncode = process.wait(timeout=30)
        finally:
            process.kill()
            process.wait()

    log = (tmp_path / "server.log").read_text()
    assert returncode == code, log
    assert "Traceback" not in log
    images = tmp_path / "data" / "mcp-imagegen" / "images"
    assert not list(images.glob(".tmp-*"))
    assert not list(images.glob("*.png"))


def test_a_client_that_vanishes_mid_call_makes_serve_exit_quietly(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    with (tmp_path / "server.log").open("wb") as errlog:
        process = _start_slow_generation(subprocess_env, tmp_path, errlog)
        assert process.stdin is not None and process.stdout is not None
        # The client dies: both ends of its pipes close.
        process.stdout.close()
        process.stdin.close()
        try:
            returncode = process.wait(timeout=30)
        finally:
            process.kill()
            process.wait()

    log = (tmp_path / "server.log").read_text()
    assert returncode == 0, log
    assert "Traceback" not in log
    assert "BrokenPipeError" not in log
    assert log.count('"event": "client_disconnected"') == 1
    assert HINT not in log  # stdin is a pipe, not a terminal


HINT = "speaks MCP on stdin/stdout"


def _serve_in_a_terminal_until(
    subprocess_env: dict[str, str], tmp_path: Path, marker: str
) -> tuple[list[str], int, str]:
    """Start ``serve`` with a terminal for stdin, read stderr up to ``marker``, SIGTERM.

    Returns the lines read, the exit code and the rest of stderr.
    """
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(MCP_IMAGEGEN_BIN), "serve"],
        env=subprocess_env,
        cwd=tmp_path / "work",
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    seen: list[str] = []
    try:
        assert process.stderr is not None
        for _ in range(50):  # bounded: the marker is among the first lines
            ready, _, _ = select.select([process.stderr], [], [], 30)
            line = process.stderr.readline().decode() if ready else ""
            if not line:
                break
            seen.append(line)
            if marker in line:
                break
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        rest = process.stderr.read().decode()
    finally:
        process.kill()
        process.wait()
        os.close(controller)
    return seen, code, rest


def test_serve_in_a_terminal_says_it_speaks_mcp_on_stdio_and_how_to_try_it(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    lines, _, _ = _serve_in_a_terminal_until(subprocess_env, tmp_path, HINT)

    [hint] = [line for line in lines if HINT in line]
    assert "inspector" in hint
    assert "mcp-imagegen serve" in hint


def test_sigterm_before_any_client_spoke_exits_promptly(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    """Started in a terminal, stopped before a client sent anything: exit 143.

    The service is already up (its lifespan starts with the process) while the
    SDK still waits for the first message; a signal then used to leave a task
    group half exited, a traceback, and a process waiting forever for its
    stdin thread.
    """
    seen, code, rest = _serve_in_a_terminal_until(
        subprocess_env, tmp_path, "server_started"
    )

    assert any("server_started" in line for line in seen)
    assert code == 128 + signal.SIGTERM, rest
    assert "Traceback" not in rest


def test_the_terminal_hint_is_wanted_only_when_stdin_is_a_terminal() -> None:
    controller, terminal = pty.openpty()
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(os.dup(terminal)) as tty, os.fdopen(os.dup(read_end)) as pipe:
            assert cli.stdio_hint(tty) is not None
            assert cli.stdio_hint(pipe) is None
    finally:
        for fd in (controller, terminal, read_end, write_end):
            os.close(fd)


async def test_json_logs_of_a_debug_run_are_json_on_every_line(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    params = StdioServerParameters(
        command=str(MCP_IMAGEGEN_BIN),
        args=["serve", "--log-format", "json", "--log-level", "debug"],
        env=subprocess_env,
        cwd=str(tmp_path / "work"),
    )
    with (tmp_path / "server.log").open("w") as errlog, anyio.fail_after(60):
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            await session.call_tool("list_images", {})

    lines = (tmp_path / "server.log").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    # The SDK's own (stdlib) debug logs are among them, rendered the same way.
    assert any(event.get("logger", "").startswith("mcp.") for event in events)
