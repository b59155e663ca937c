"""Post-processing speed: the default chain's cost, and the event loop while chains run.

1. Median time of the default chain (``metadata``) on photo-like 512² and 1024²
   PNGs, against a baseline measured in the same run: a plain Pillow decode +
   PNG re-encode of the same image (what embedding metadata by re-saving costs).
   The production chain (resize to 1024, WebP 85, metadata) is timed too.
2. Worst event-loop lag while 4 images of 2048² run resize + convert + metadata
   concurrently, measured by a ticker task that sleeps 5 ms and records how late
   it wakes. Goal: worst lag < 50 ms. Each scenario runs ``--rounds`` times
   (interleaved); the median of the rounds' worst lags is shown with the maximum,
   so one hiccup of a shared machine does not decide. Scenarios:

   - idle: the ticker alone (the floor on this machine);
   - steps: the four chains on pre-made 2048² PNGs (this plugin's work only);
   - service: four real ``ImageService.generate`` calls (placeholder backend at
     2048², the same chain, file storage) — the whole path;
   - service, no chain: the same calls with ``postprocess=[]``, so that the lag
     the chain adds can be told from the backend's and the storage's own;
   - on-loop baseline: the same chain work called synchronously on the loop
     (what the lag would be without worker threads).

    .venv/bin/python bench/postprocess.py [--runs 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
from PIL import Image

from mcp_imagegen import (
    GeneratedImage,
    GenerationRequest,
    PostProcessor,
    ProcessingContext,
)
from mcp_imagegen._app import build_service
from mcp_imagegen._config import LoggingSettings, settings_from_dict
from mcp_imagegen._logs import configure_logging
from mcp_imagegen_imageops.convert import ConvertSettings, ConvertStep
from mcp_imagegen_imageops.metadata import MetadataSettings, MetadataStep
from mcp_imagegen_imageops.resize import ResizeSettings, ResizeStep
from mcp_imagegen_imageops.step import ImageOpsStep

TICK_S = 0.005
CONCURRENT = 4
BIG = 2048


def photo_png(side: int, seed: int = 0) -> GeneratedImage:
    """A PNG that compresses like a photo: gradients, waves and grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    rgb = np.stack(
        [x * 255 / side, y * 255 / side, 128 + 100 * np.sin((x + 2 * y) / 37.0)],
        axis=-1,
    )
    rgb += rng.normal(0, 8, rgb.shape)
    buffer = io.BytesIO()
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return GeneratedImage(
        data=buffer.getvalue(),
        mime_type="image/png",
        width=side,
        height=side,
        seed=seed,
        model="bench",
    )


def context(side: int) -> ProcessingContext:
    request = GenerationRequest(
        prompt="a lighthouse on a cliff at dusk, watercolor",
        negative_prompt="blurry",
        width=side,
        height=side,
        seed=1,
        steps=30,
        guidance_scale=7.0,
    )
    return ProcessingContext(request=request, backend="bench", seed=1, model="bench")


def production_chain() -> list[ImageOpsStep]:
    return [
        ResizeStep(ResizeSettings(max_side=1024)),
        ConvertStep(ConvertSettings(format="webp", quality=85)),
        MetadataStep(MetadataSettings()),
    ]


async def run_chain(
    chain: Sequence[PostProcessor], image: GeneratedImage, ctx: ProcessingContext
) -> GeneratedImage:
    for step in chain:
        image = await step.process(image, ctx)
    return image


def run_chain_on_loop(
    chain: Sequence[ImageOpsStep], image: GeneratedImage, ctx: ProcessingContext
) -> GeneratedImage:
    for step in chain:
        image = step.apply(image, ctx)
    return image


def reencode_png(image: GeneratedImage) -> bytes:
    decoded = Image.open(io.BytesIO(image.data))
    buffer = io.BytesIO()
    decoded.save(buffer, format="PNG")
    return buffer.getvalue()


async def median_ms(work: Callable[[], Awaitable[Any]], runs: int) -> float:
    await work()  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def worst_lag_ms(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Run ``work`` beside a 5 ms ticker; return (worst, p99) lateness in ms."""
    lags: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await anyio.sleep(TICK_S)
            lags.append((time.perf_counter() - before - TICK_S) * 1000)

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        await anyio.sleep(0.05)  # let the ticker settle
        await work()
        done.set()
    lags.sort()
    return lags[-1], lags[int(len(lags) * 0.99) - 1]


async def chain_times(runs: int) -> None:
    print("== default chain ['metadata'] vs a plain Pillow PNG re-encode (median)")
    metadata = [MetadataStep(MetadataSettings())]
    for side in (512, 1024):
        image, ctx = photo_png(side), context(side)
        ours = await median_ms(partial(run_chain, metadata, image, ctx), runs)
        base = await median_ms(
            partial(anyio.to_thread.run_sync, reencode_png, image), runs
        )
        print(
            f"  {side}²: metadata {ours:7.1f} ms | re-encode {base:7.1f} ms | "
            f"ratio {ours / base:.2f}"
        )
    print("== production chain resize(1024) + convert(webp 85) + metadata (median)")
    chain = production_chain()
    for side in (512, 1024, 2048):
        image, ctx = photo_png(side), context(side)
        ours = await median_ms(partial(run_chain, chain, image, ctx), max(3, runs // 3))
        print(f"  {side}²: {ours:7.1f} ms")


async def loop_lag(rounds: int) -> None:
    print(f"== event-loop lag, {CONCURRENT} x {BIG}² resize+convert+metadata at once")
    images = [photo_png(BIG, seed) for seed in range(CONCURRENT)]
    ctx = context(BIG)

    async def idle() -> None:
        await anyio.sleep(1.0)

    async def steps() -> None:
        async with anyio.create_task_group() as group:
            for image in images:
                group.start_soon(run_chain, production_chain(), image, ctx)

    async def on_loop() -> None:
        for image in images:
            run_chain_on_loop(production_chain(), image, ctx)
            await anyio.lowlevel.checkpoint()

    with tempfile.TemporaryDirectory(prefix="bench-postprocess-") as directory:
        settings = settings_from_dict(
            {
                "server": {"max_concurrent_generations": CONCURRENT},
                "storage": {"backend": "file", "file": {"directory": directory}},
                "generation": {"postprocess": ["resize", "web", "metadata"]},
                "postprocess": {
                    "resize": {"max_side": 1024},
                    "web": {"type": "convert", "format": "webp", "quality": 85},
                },
            }
        )
        async with build_service(settings) as service:

            async def generate(seed: int, chain: list[str] | None) -> None:
                request = GenerationRequest(
                    prompt="a lighthouse", width=BIG, height=BIG, seed=seed
                )
                await service.generate(request, postprocess=chain)

            async def through_service(chain: list[str] | None = None) -> None:
                async with anyio.create_task_group() as group:
                    for seed in range(CONCURRENT):
                        group.start_soon(generate, seed, chain)

            async def service_no_chain() -> None:
                await through_service([])

            await through_service()  # warm up (fonts, thread pool)
            scenarios: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("idle", idle),
                ("steps", steps),
                ("service", through_service),
                ("service, no chain", service_no_chain),
                ("on-loop baseline", on_loop),
            ]
            worsts: dict[str, list[float]] = {label: [] for label, _ in scenarios}
            p99s: dict[str, list[float]] = {label: [] for label, _ in scenarios}
            for _round in range(rounds):
                for label, work in scenarios:
                    worst, p99 = await worst_lag_ms(work)
                    worsts[label].append(worst)
                    p99s[label].append(p99)
    results = {label: statistics.median(values) for label, values in worsts.items()}
    for label, values in worsts.items():
        print(
            f"  {label:18s} worst {results[label]:7.1f} ms (median of {rounds}; "
            f"max {max(values):7.1f}) | p99 {statistics.median(p99s[label]):6.1f} ms"
        )
    goal = "met" if results["steps"] < 50 else "MISSED"
    print(
        f"  goal (steps) worst lag < 50 ms: {goal}; on-loop/steps ratio "
        f"{results['on-loop baseline'] / results['steps']:.0f}x; "
        f"service with/without chain ratio "
        f"{results['service'] / results['service, no chain']:.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging(LoggingSettings(level="warning"))
    await chain_times(args.runs)
    await loop_lag(args.rounds)


if __name__ == "__main__":
    anyio.run(main)
