"""Image input speed: edit_image against generate_image, and the event loop.

1. Median time of ``ImageService.edit`` of a stored photo-like 1024² PNG against
   ``ImageService.generate`` at 1024², both on the placeholder backend with the
   default chain (``metadata``) and file storage, measured in the same run; the
   ratio, and where the extra time goes: reading the input (storage load),
   checking and sizing it, and the placeholder's own input decode and
   photo-like output encode (each timed alone).
   The edit's own record splits it further: the backend's call (input
   decode, drawing, compositing, output encode), the post-processing (the
   ``metadata`` step and the sha256) and the save; the rest is the service
   reading, checking and sizing the input.
2. Worst event-loop lag while four 2048² edits run at once, from a ticker task
   that sleeps 5 ms and records how late it wakes (goal: < 20 ms), next to the
   ticker alone (this machine's floor), four threads of GIL-free CPU work
   (zlib level 1 on 2048² pixels: what four busy threads alone cost the loop
   on this machine), four 2048² generations (the baseline), and four 2048²
   edits of inputs sent as ``data:`` URIs (about 13 MB of base64 each), and one
   such edit alone (no thread competes for the GIL or the cores: its worst lag
   is the longest stretch a single edit holds the GIL). Each
   runs ``--rounds`` times; the median of the rounds' worst lags is shown
   with the maximum.

3. The longest stretch some steps of a 2048² data-URI edit hold the GIL,
   each alone in this thread, from a 1 ms ticker thread (its worst lateness,
   median of ``--runs``, switch interval 0.2 ms): decoding the 13 MB
   ``data:`` URI, proving the PNG whole (``verify_image``), the ``metadata``
   step's container rewrite, wrapping 10 MB as ``EncodedImage``, and (on
   the event loop, from a 1 ms ticker task) a tool result carrying the image
   inline (``server.max_inline_bytes`` raised to let it).

    .venv/bin/python bench/edit.py [--runs 9] [--rounds 5] [--only speed|lag|gil]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import numpy as np
from PIL import Image

from mcp_imagegen import GenerationRequest
from mcp_imagegen._app import build_service
from mcp_imagegen._config import LoggingSettings, settings_from_dict
from mcp_imagegen._logs import configure_logging
from mcp_imagegen._mcp.content import image_content
from mcp_imagegen._service import ImageService
from mcp_imagegen.imaging import EncodedImage, open_image, verify_image
from mcp_imagegen_imageops.containers import EmbeddedMetadata, write_metadata

TICK_S = 0.005
CONCURRENT = 4
BIG = 2048
SIDE = 1024


def photo_data_uri(side: int, seed: int = 0) -> str:
    """A photo-like PNG (gradient plus noise: it compresses like a photo)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, side, dtype=np.float32)
    pixels = ramp[None, :, None] + ramp[:, None, None] * 0.2
    pixels = pixels + rng.normal(0, 18, (side, side, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def encode_png(image: Image.Image) -> bytes:
    """What the placeholder does with an edit's result: PNG, level 1."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


async def median_ms(work: Callable[[], Awaitable[Any]], runs: int) -> float:
    await work()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def worst_lag_ms(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Run ``work`` beside a 5 ms ticker; the worst lateness and its time, in ms."""
    lags: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            before = time.perf_counter()
            await anyio.sleep(TICK_S)
            lags.append((time.perf_counter() - before - TICK_S) * 1000)

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        await anyio.sleep(0.05)
        started = time.perf_counter()
        await work()
        took = (time.perf_counter() - started) * 1000
        done.set()
    return max(lags), took


async def speed(service: ImageService, runs: int) -> None:
    print(f"== edit_image vs generate_image at {SIDE}² (placeholder, median)")
    stored = await service.ingest(data=photo_data_uri(SIDE))
    image_id = stored.record.id
    request = GenerationRequest(prompt="a lighthouse", width=SIDE, height=SIDE, seed=1)

    async def generate() -> None:
        await service.generate(request)

    async def edit() -> None:
        await service.edit(image_id, "a lighthouse at night", seed=1)

    async def load() -> None:
        await service.editor.reader.read(image_id, "image")

    raw = await service.editor.reader.read(image_id, "image")
    capabilities = service.backends["placeholder"].capabilities

    async def prepare() -> None:
        await anyio.to_thread.run_sync(
            service.editor._prepare, raw, None, None, None, capabilities
        )

    async def prepare_resized() -> None:
        await anyio.to_thread.run_sync(
            service.editor._prepare, raw, None, SIDE * 3 // 4, None, capabilities
        )

    async def decode() -> None:
        await anyio.to_thread.run_sync(open_image, raw.data)

    decoded = open_image(raw.data)

    async def encode() -> None:
        await anyio.to_thread.run_sync(encode_png, decoded)

    stages: dict[str, list[float]] = {"backend": [], "postprocess": [], "save": []}
    totals: list[float] = []

    async def edit_recorded() -> None:
        started = time.perf_counter()
        stored = await service.edit(image_id, "a lighthouse at night", seed=1)
        totals.append((time.perf_counter() - started) * 1000)
        durations = stored.record.durations
        stages["backend"].append(durations.generate_ms)
        stages["postprocess"].append(durations.postprocess_ms)
        stages["save"].append(durations.save_ms)

    gen_ms = await median_ms(generate, runs)
    edit_ms = await median_ms(edit, runs)
    await median_ms(edit_recorded, runs)
    del totals[0], stages["backend"][0], stages["postprocess"][0], stages["save"][0]
    rest = [
        total - sum(parts)
        for total, *parts in zip(totals, *stages.values(), strict=True)
    ]
    figures = {
        "input load (storage)": await median_ms(load, runs),
        "input check + sizing (PNG passed on as is)": await median_ms(prepare, runs),
        f"input check + sizing (resized to {SIDE * 3 // 4}², re-encoded)": (
            await median_ms(prepare_resized, runs)
        ),
        "backend: input decode": await median_ms(decode, runs),
        "backend: photo-like output PNG encode": await median_ms(encode, runs),
    }
    print(
        f"  generate {gen_ms:7.1f} ms | edit {edit_ms:7.1f} ms | "
        f"ratio {edit_ms / gen_ms:.2f}"
    )
    names = {
        "backend": "backend call (decode, draw, composite, encode)",
        "postprocess": "metadata step + sha256",
        "save": "save (file storage)",
    }
    for key, values in stages.items():
        print(f"  edit stage: {names[key]:47} {statistics.median(values):7.1f} ms")
    print(
        f"  edit stage: {'service: read, check, size input; the rest':47} "
        f"{statistics.median(rest):7.1f} ms"
    )
    for name, ms in figures.items():
        print(f"  of the edit: {name:52} {ms:7.1f} ms")


async def loop_lag(service: ImageService, rounds: int) -> None:
    print(f"== event-loop lag, {CONCURRENT} x {BIG}² edits at once (goal < 20 ms)")
    ids = [
        (await service.ingest(data=photo_data_uri(BIG, seed))).record.id
        for seed in range(CONCURRENT)
    ]

    async def idle() -> None:
        await anyio.sleep(1.0)

    async def edits() -> None:
        async with anyio.create_task_group() as group:
            for seed, image_id in enumerate(ids):
                group.start_soon(_edit, service, image_id, seed)

    uris = [photo_data_uri(BIG, seed) for seed in range(CONCURRENT)]
    pixels = open_image(await _load(service, ids[0])).tobytes()

    def compress() -> None:
        zlib.compress(pixels, 1)  # releases the GIL while it works

    async def busy_threads() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(CONCURRENT):
                group.start_soon(anyio.to_thread.run_sync, compress)

    async def uri_edits() -> None:
        async with anyio.create_task_group() as group:
            for seed, uri in enumerate(uris):
                group.start_soon(_edit, service, uri, seed)

    async def one_uri_edit() -> None:
        await _edit(service, uris[0], 0)

    async def generations() -> None:
        async with anyio.create_task_group() as group:
            for seed in range(CONCURRENT):
                group.start_soon(_generate, service, seed)

    scenarios = {
        "idle": idle,
        "busy threads": busy_threads,
        "generations": generations,
        "edits": edits,
        "edits (data:)": uri_edits,
        "one edit (data:)": one_uri_edit,
    }
    results: dict[str, list[float]] = {name: [] for name in scenarios}
    walls: dict[str, list[float]] = {name: [] for name in scenarios}
    for _ in range(rounds):
        for name, work in scenarios.items():
            lag, wall = await worst_lag_ms(work)
            results[name].append(lag)
            walls[name].append(wall)
    for name, lags in results.items():
        print(
            f"  {name:16}: worst lag median {statistics.median(lags):6.1f} ms, "
            f"max {max(lags):6.1f} ms over {rounds} rounds; done in "
            f"{statistics.median(walls[name]):6.0f} ms"
        )


def worst_thread_lag_ms(work: Callable[[], Any], runs: int) -> float:
    """Median over ``runs`` of the worst lateness of a 1 ms ticker thread.

    The switch interval is cut to 0.2 ms meanwhile: a thread running Python
    gives the GIL up within it, so what remains is the longest C call holding
    the GIL, not the interpreter's 5 ms default turn.
    """
    worst = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    for _ in range(runs):
        lags: list[float] = []
        done = threading.Event()

        def ticker(lags: list[float] = lags, done: threading.Event = done) -> None:
            while not done.is_set():
                before = time.perf_counter()
                time.sleep(0.001)
                lags.append((time.perf_counter() - before - 0.001) * 1000)

        thread = threading.Thread(target=ticker)
        thread.start()
        time.sleep(0.01)
        work()
        done.set()
        thread.join()
        worst.append(max(lags))
    sys.setswitchinterval(interval)
    return statistics.median(worst)


async def gil(service: ImageService, runs: int) -> None:
    print(f"== longest GIL stretch of steps of a {BIG}² data: URI edit (median)")
    uri = photo_data_uri(BIG)
    stored = await service.ingest(data=uri)
    data = await _load(service, stored.record.id)
    reader = service.editor.reader
    embedded = EmbeddedMetadata(exif=b"MM\x00*\x00\x00\x00\x08\x00\x00", xmp=b"<x/>")
    figures = {
        "decode the data: URI (13 MB of base64)": lambda: reader._read_data(uri, "i"),
        "verify_image (PNG proven whole)": lambda: verify_image(data),
        "metadata: container rewrite": lambda: write_metadata(
            data, "image/png", embedded, canvas=(BIG, BIG), has_alpha=False
        ),
        "EncodedImage(data) (the placeholder's wrap)": lambda: EncodedImage(data),
    }
    for name, work in figures.items():
        print(f"  {name:44} {worst_thread_lag_ms(work, runs):6.1f} ms")
    service.settings.server.max_inline_bytes = 4 * len(data)
    record = stored.record
    lags = []
    for _ in range(runs):

        async def inline() -> None:
            await image_content(service, [(record, data)], "full")

        lags.append((await worst_lag_ms(inline))[0])
    name = f"tool result with the image inline ({len(data) >> 20} MB)"
    print(f"  {name:44} {statistics.median(lags):6.1f} ms (event loop, 5 ms ticker)")


async def _load(service: ImageService, image_id: str) -> bytes:
    return (await service.editor.reader.read(image_id, "image")).data


async def _generate(service: ImageService, seed: int) -> None:
    request = GenerationRequest(prompt="a lighthouse", width=BIG, height=BIG, seed=seed)
    await service.generate(request)


async def _edit(service: ImageService, image_id: str, seed: int) -> None:
    await service.edit(image_id, "a lighthouse at night", seed=seed)


async def main(runs: int, rounds: int, only: str | None) -> None:
    configure_logging(LoggingSettings(level="warning"))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-edit-") as directory:
        settings = settings_from_dict(
            {
                "server": {"max_concurrent_generations": CONCURRENT},
                "storage": {"backend": "file", "file": {"directory": directory}},
            }
        )
        async with build_service(settings) as service:
            if only in (None, "speed"):
                await speed(service, runs)
            if only in (None, "lag"):
                await loop_lag(service, rounds)
            if only in (None, "gil"):
                await gil(service, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["speed", "lag", "gil"])
    arguments = parser.parse_args()
    anyio.run(main, arguments.runs, arguments.rounds, arguments.only)
