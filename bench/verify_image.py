"""Proving an image whole: imaging.verify_image against a full decode (open_image).

The metadata step proves every generated image whole before writing the recipe
into it; it needs only the size and mode. Placeholder PNGs at 512² and 1024²,
calls interleaved, medians:

    .venv/bin/python bench/verify_image.py [--calls 60]
"""

from __future__ import annotations

import argparse
import statistics
import time

import anyio

from mcp_imagegen import GenerationRequest, ignore_progress
from mcp_imagegen.imaging import open_image, verify_image
from mcp_imagegen_placeholder.backend import PlaceholderBackend, PlaceholderSettings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=60)
    args = parser.parse_args()
    backend = PlaceholderBackend(PlaceholderSettings())
    for side in (512, 1024):
        request = GenerationRequest(
            prompt="a lighthouse on a cliff at dusk", width=side, height=side, seed=7
        )
        data = (await backend.generate(request, ignore_progress))[0].data
        times: dict[str, list[float]] = {"open_image": [], "verify_image": []}
        for _ in range(args.calls):
            for name, check in (
                ("open_image", open_image),
                ("verify_image", verify_image),
            ):
                started = time.perf_counter()
                check(data)
                times[name].append(time.perf_counter() - started)
        ms = {name: statistics.median(values) * 1000 for name, values in times.items()}
        print(
            f"{side}x{side} PNG ({len(data)} bytes):"
            f" open_image {ms['open_image']:.2f} ms,"
            f" verify_image {ms['verify_image']:.2f} ms,"
            f" ratio {ms['verify_image'] / ms['open_image']:.2f}"
        )


if __name__ == "__main__":
    anyio.run(main)
