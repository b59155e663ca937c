"""The torch venv, the tiny pipeline and the predictor server, for tests and bench.

``conftest.py`` turns these into session fixtures; ``bench/diffusers_predictor.py``
uses them directly. Everything runs the example predictor as a child process in
the torch venv (``.cache/diffusers-venv``); the main venv never imports torch.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

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


class SetupError(RuntimeError):
    """The torch venv, the pipeline or the server could not be made."""


def ensure_venv() -> Path:
    """Return the torch venv's python, running ``install.sh`` if it is missing or stale.

    Raises:
        SetupError: The venv could not be created (the message says why).
    """
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
            raise SetupError(
                "the torch venv for the diffusers predictor could not be created "
                f"(tests/diffusers/install.sh exited {result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
    return VENV_PYTHON


def child_env() -> dict[str, str]:
    """The environment of the torch-venv children: offline, one CPU thread."""
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


def build_pipeline() -> Path:
    """Return the tiny pipeline's directory, building it on first use.

    Raises:
        SetupError: The venv is missing or ``build_tiny.py`` failed.
    """
    python = ensure_venv()
    result = subprocess.run(
        [str(python), str(HERE / "build_tiny.py"), str(PIPELINES)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise SetupError(f"build_tiny.py failed:\n{result.stderr[-3000:]}")
    path = Path(result.stdout.strip().splitlines()[-1])
    if not (path / "model_index.json").is_file():
        raise SetupError(f"build_tiny.py printed no pipeline: {result.stdout!r}")
    return path


def start_predictor(pipeline: Path, log_path: Path) -> KServeServer:
    """Start predictor.py on ``pipeline`` (model ``tiny-sd``) and wait until ready.

    Raises:
        SetupError: The server exited or was not ready in time (log tail included).
    """
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(VENV_PYTHON),
                str(HERE / "serve_loopback.py"),
                "--model_name",
                MODEL,
                "--model_id",
                str(pipeline),
                "--device",
                "cpu",
                "--http_port",
                str(port),
                "--enable_grpc",
                "false",
            ],
            cwd=ROOT,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = KServeServer(f"http://127.0.0.1:{port}", port, log_path, process)
    try:
        _wait_ready(server)
    except BaseException:
        stop_predictor(server)
        raise
    return server


def stop_predictor(server: KServeServer) -> None:
    """Stop the server (SIGTERM, then SIGKILL after 2 s)."""
    process = server.process
    if process.poll() is not None:
        return
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
            raise SetupError(f"the predictor exited:\n{server.log_tail()}")
        try:
            if httpx.get(ready_url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SetupError(f"the predictor was not ready in time:\n{server.log_tail()}")
