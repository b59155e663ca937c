"""Benchmark: the KServe backend's client overhead per 1024x1024 image.

Starts the test predictor (a real ``kserve.ModelServer``, tests/kserve/predictor.py)
on a free 127.0.0.1 port and measures, for V1, V2 JSON and V2 binary:

- ``floor``: a bare ``httpx`` POST of the same body plus base64 decoding of the
  image (or slicing it out of the binary tail) — the least any client must do;
- ``plugin``: ``KServeBackend.generate`` for one image (retry loop, progress,
  response parsing, Pillow verification of the image, GeneratedImage);
- ``verify``: ``mcp_imagegen.imaging.describe_image`` on the same image — the full
  Pillow decode (with the pixel cap) every image must pass before it is accepted.

Both ask for the same seed, so the predictor answers from its render cache and
the figures are dominated by transfer and client work, not by "inference".
Each row prints the medians, ``plugin / floor`` (the issue's goal: <= 1.2) and
``plugin / (floor + verify)``: the overhead beyond the mandatory verification.

Run: ``.venv/bin/python bench/kserve_client.py [--rounds N]``
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx

from mcp_imagegen import GenerationRequest, ignore_progress
from mcp_imagegen.imaging import describe_image
from mcp_imagegen_kserve.backend import KServeBackend
from mcp_imagegen_kserve.responses import BINARY_HEADER
from mcp_imagegen_kserve.settings import KServeSettings

ROOT = Path(__file__).resolve().parent.parent
SIDE = 1024
SEED = 1234
PROMPT = "a lighthouse on a cliff at dusk"

#: name -> backend settings
CASES: dict[str, dict[str, Any]] = {
    "v1": {"model": "sd-v1", "protocol": "v1"},
    "v2 json": {"model": "sd-v2", "protocol": "v2"},
    "v2 binary": {"model": "sd-v2", "protocol": "v2", "binary_data": True},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.kserve.predictor"),
                *("--http_port", str(port), "--enable_grpc", "false"),
                *("--enable_latency_logging", "false"),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise SystemExit(f"predictor exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/models/sd-v1/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("predictor not ready within 60 s")


def floor_call(
    client: httpx.AsyncClient, url: str, case: dict[str, Any]
) -> Callable[[], Awaitable[bytes]]:
    """Return the bare request: POST + extract the image bytes, nothing else."""
    model = case["model"]
    fields = {"width": SIDE, "height": SIDE, "seed": SEED}
    if case["protocol"] == "v1":
        endpoint = f"{url}/v1/models/{model}:predict"
        body: dict[str, Any] = {"instances": [{"prompt": PROMPT, **fields}]}
    else:
        endpoint = f"{url}/v2/models/{model}/infer"
        parameters: dict[str, Any] = dict(fields)
        if case.get("binary_data"):
            parameters["binary_data_output"] = True
        body = {
            "inputs": [
                {"name": "prompt", "shape": [1], "datatype": "BYTES", "data": [PROMPT]}
            ],
            "parameters": parameters,
        }

    async def call() -> bytes:
        response = await client.post(endpoint, json=body)
        response.raise_for_status()
        if case["protocol"] == "v1":
            b64 = response.json()["predictions"][0]["image"]["b64"]
            return base64.b64decode(b64)
        header = response.headers.get(BINARY_HEADER)
        if header is None:
            return base64.b64decode(response.json()["outputs"][0]["data"][0])
        tail = response.content[int(header) :]
        (length,) = struct.unpack_from("<I", tail)
        return tail[4 : 4 + length]

    return call


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    begun = time.perf_counter()
    await call()
    return (time.perf_counter() - begun) * 1000


Row = tuple[str, float, float, float, int]


async def measure(url: str, rounds: int) -> list[Row]:
    rows = []
    request = GenerationRequest(prompt=PROMPT, width=SIDE, height=SIDE, seed=SEED)
    async with httpx.AsyncClient(timeout=60) as client:
        for name, case in CASES.items():
            settings = KServeSettings(url=url, **case)
            async with KServeBackend(settings, instance_name="bench") as backend:

                async def plugin_call(backend: KServeBackend = backend) -> Any:
                    return await backend.generate(request, ignore_progress)

                bare = floor_call(client, url, case)
                image = await bare()  # warm-up: fills the predictor's cache
                await plugin_call()

                async def verify(image: bytes = image) -> Any:
                    return describe_image(image)

                floor_ms, plugin_ms, verify_ms = [], [], []
                for _ in range(rounds):  # interleaved, so drift hits all alike
                    floor_ms.append(await timed(bare))
                    plugin_ms.append(await timed(plugin_call))
                    verify_ms.append(await timed(verify))
            rows.append(
                (
                    name,
                    statistics.median(floor_ms),
                    statistics.median(plugin_ms),
                    statistics.median(verify_ms),
                    len(image),
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(Path(tmp) / "predictor.log")
        try:
            rows = anyio.run(measure, url, args.rounds)
        finally:
            process.terminate()
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
    print(f"KServe client, one {SIDE}x{SIDE} PNG per request, median of {args.rounds}")
    print(
        f"{'protocol':<10} {'image':>9} {'floor ms':>9} {'plugin ms':>10} "
        f"{'verify ms':>10} {'plugin/floor':>13} {'plugin/(floor+verify)':>22}"
    )
    for name, floor, plugin, verify, size in rows:
        beyond = plugin / (floor + verify)
        print(
            f"{name:<10} {size / 1e6:>7.2f}MB {floor:>9.1f} {plugin:>10.1f} "
            f"{verify:>10.1f} {plugin / floor:>13.2f} {beyond:>22.2f}"
        )
    summary = {
        name: {
            "plugin_over_floor": round(p / f, 3),
            "plugin_over_floor_plus_verify": round(p / (f + v), 3),
        }
        for name, f, p, v, _ in rows
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
