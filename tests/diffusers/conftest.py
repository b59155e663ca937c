"""Fixtures: the example diffusers predictor on CPU in a real KServe model server.

The torch venv (``.cache/diffusers-venv``, see ``install.sh``) is made by
``make test``; a bare ``pytest`` makes it on first use. In it, ``build_tiny.py``
builds a tiny random Stable Diffusion pipeline once (cached by the script's hash
under ``.cache/tiny-sd``) and ``serve_loopback.py`` runs
``examples/kserve-predictor/predictor.py`` on it, on a free 127.0.0.1 port, offline
(``HF_HUB_OFFLINE=1``). Only a venv that could not be created skips these tests,
with the reason.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.kserve.support import KServeServer, free_port

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV = ROOT / ".cache" / "diffusers-venv"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".installed"
PIPELINES = ROOT / ".cache" / "tiny-sd"
MODEL = "tiny-sd"
#: A cold install of torch and diffusers from the machine's wheels (~4 min here).
INSTALL_TIMEOUT = 1200
#: Building the tiny pipeline (imports torch and diffusers: ~15 s on a busy machine).
BUILD_TIMEOUT = 300
#: Starting the server: imports, loading three pipelines (~10 s on a busy machine).
STARTUP_TIMEOUT = 180


def _venv_python() -> Path:
    stale = not STAMP.is_file() or any(
        STAMP.stat().st_mtime < (HERE / name).stat().st_mtime
        for name in ("requirements.txt", "install.sh")
    )
    if stale:
        result = subprocess.run(
            ["sh", str(HERE / "install.sh"), str(VENV)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if result.returncode != 0 or not STAMP.is_file():
            pytest.skip(
                "the torch venv for the diffusers predictor could not be created "
                f"(tests/diffusers/install.sh exited {result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
    return VENV_PYTHON


def _child_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        # No hub: everything the pipeline needs is on disk.
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        # One thread: torch's OpenMP workers spin against each other on a busy
        # 2-core machine (a 64x64 image took 8 s with two threads, 0.3 s with one).
        "OMP_NUM_THREADS": "1",
    }


@pytest.fixture(scope="session")
def tiny_pipeline() -> Path:
    """Directory of the tiny random pipeline (built once, then reused)."""
    python = _venv_python()
    result = subprocess.run(
        [str(python), str(HERE / "build_tiny.py"), str(PIPELINES)],
        cwd=ROOT,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"build_tiny.py failed:\n{result.stderr[-3000:]}"
    path = Path(result.stdout.strip().splitlines()[-1])
    assert (path / "model_index.json").is_file(), result.stdout
    return path


@pytest.fixture(scope="session")
def predictor_server(
    tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KServeServer]:
    """predictor.py serving the tiny pipeline as model ``tiny-sd``."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("diffusers") / "predictor.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(VENV_PYTHON),
                str(HERE / "serve_loopback.py"),
                "--model_name",
                MODEL,
                "--model_id",
                str(tiny_pipeline),
                "--device",
                "cpu",
                "--http_port",
                str(port),
                "--enable_grpc",
                "false",
            ],
            cwd=ROOT,
            env=_child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = KServeServer(f"http://127.0.0.1:{port}", port, log_path, process)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            # uvicorn waits for requests in flight; nothing here needs a graceful end.
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_ready(server: KServeServer) -> None:
    ready_url = f"{server.url}/v1/models/{MODEL}"
    give_up = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < give_up:
        if server.process.poll() is not None:
            pytest.fail(f"the predictor exited:\n{server.log_tail()}")
        try:
            if httpx.get(ready_url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the predictor was not ready in time:\n{server.log_tail()}")
