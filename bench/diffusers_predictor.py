"""Benchmark: the example diffusers predictor's three modes on CPU (issue 13).

Starts examples/kserve-predictor/predictor.py on the tiny random Stable Diffusion
pipeline of tests/diffusers (torch venv ``.cache/diffusers-venv``, one CPU thread,
offline) in a real ``kserve.ModelServer`` on 127.0.0.1, and times whole V1
requests (JSON, base64 in and out, the pipeline, PNG encoding) per mode:
text-to-image (the baseline), image-to-image (strength 0.75: 3 of the 4 steps)
and inpainting (strength 1.0: all 4 steps, plus the VAE encode of the input and
the mask overlay). Prints the medians and each mode's ratio to text-to-image
measured in the same run. The weights are random: the figures show the
predictor's and diffusers' own cost at these sizes, not a real model's speed.

Run: ``.venv/bin/python bench/diffusers_predictor.py [--rounds N]``
(makes the torch venv and the pipeline on first use, like the tests).
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the venv, pipeline and server helpers of the tests

import httpx  # noqa: E402
from PIL import Image  # noqa: E402

from tests.diffusers.support import (  # noqa: E402
    MODEL,
    build_pipeline,
    start_predictor,
    stop_predictor,
)

STEPS = 4
SIZES = [(96, 64), (256, 256)]


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _instances(width: int, height: int) -> dict[str, dict[str, Any]]:
    source = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (0, 0, width // 2, height))
    base = {
        "prompt": "a lighthouse at night",
        "width": width,
        "height": height,
        "seed": 3,
        "num_inference_steps": STEPS,
    }
    return {
        "text-to-image": base,
        "image-to-image": {**base, "image": _png(source), "strength": 0.75},
        "inpainting": {
            **base,
            "image": _png(source),
            "mask_image": _png(mask),
            "strength": 1.0,
        },
    }


def _median_seconds(client: httpx.Client, url: str, body: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds + 1):  # the first round warms up and is dropped
        start = time.perf_counter()
        response = client.post(url, json=body)
        times.append(time.perf_counter() - start)
        response.raise_for_status()
    return statistics.median(times[1:])


def main() -> None:
    """Run the benchmark and print one row per size and mode."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    pipeline = build_pipeline()
    with tempfile.TemporaryDirectory() as scratch:
        server = start_predictor(pipeline, Path(scratch) / "predictor.log")
        try:
            url = f"{server.url}/v1/models/{MODEL}:predict"
            print(f"{STEPS} steps, median of {args.rounds}, one CPU thread")
            print("| size | mode | median | / text-to-image |")
            print("| --- | --- | --- | --- |")
            with httpx.Client(timeout=300) as client:
                for width, height in SIZES:
                    baseline = 0.0
                    for mode, instance in _instances(width, height).items():
                        body = {"instances": [instance]}
                        seconds = _median_seconds(client, url, body, args.rounds)
                        baseline = baseline or seconds
                        print(
                            f"| {width}x{height} | {mode} | {seconds * 1000:.0f} ms"
                            f" | {seconds / baseline:.2f} |"
                        )
        finally:
            stop_predictor(server)


if __name__ == "__main__":
    main()
