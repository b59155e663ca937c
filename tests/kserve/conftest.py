"""Fixtures for the KServe backend tests: one real KServe model server per session.

The server (``tests/kserve/predictor.py``) serves every test model from one
``kserve.ModelServer`` process on a free 127.0.0.1 port; it is started on first
use, polled until its models are ready and stopped at the end of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_imagegen_kserve.backend import KServeBackend
from mcp_imagegen_kserve.settings import KServeSettings
from tests.kserve.support import FAST_RETRIES, KServeServer, free_port

ROOT = Path(__file__).resolve().parents[2]
#: How long the server may take to load its models (it takes 2-4 s here).
STARTUP_TIMEOUT = 60.0


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        # uvicorn waits for requests in flight (a slow fault model may still be
        # sleeping on an abandoned request); nothing here needs a graceful end.
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@pytest.fixture(scope="session")
def kserve_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KServeServer]:
    """Start the test predictor and wait until its models answer ready."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("kserve") / "predictor.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.kserve.predictor",
                "--http_port",
                str(port),
                "--enable_grpc",
                "false",
                "--enable_latency_logging",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = KServeServer(f"http://127.0.0.1:{port}", port, log_path, process)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: KServeServer) -> None:
    # The port opens only once the models are loaded; then every model answers.
    ready_url = f"{server.url}/v2/models/sd-v1/ready"
    give_up = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < give_up:
        if server.process.poll() is not None:
            pytest.fail(f"the KServe test server exited:\n{server.log_tail()}")
        try:
            if httpx.get(ready_url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"the KServe test server was not ready in time:\n{server.log_tail()}")


@pytest.fixture
def backend_factory(
    kserve_server: KServeServer,
) -> Callable[..., Any]:
    """Return ``open(model, **settings)``: an async context with a started backend."""

    @asynccontextmanager
    async def open_backend(
        model: str, *, instance_name: str = "test", **options: Any
    ) -> AsyncIterator[KServeBackend]:
        settings = KServeSettings(
            url=options.pop("url", kserve_server.url),
            model=model,
            **{**FAST_RETRIES, **options},
        )
        async with KServeBackend(settings, instance_name=instance_name) as backend:
            yield backend

    return open_backend
