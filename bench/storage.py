"""Storage benchmark: file vs S3 (a real SeaweedFS on loopback, started here).

Prints:
- median save+load time of a 512 KB image, file storage and S3 storage;
- throughput of 64 concurrent saves to S3 against the same 64 saves one by one
  (goal: at least 4x faster concurrently), twice: straight to SeaweedFS on
  loopback, and through a proxy on loopback that adds 20 ms of round-trip time,
  like an S3 endpoint in another building. Concurrency exists to hide latency; on
  loopback the SeaweedFS sharing this 2-core machine is the bottleneck, so its own
  ceiling (raw PUTs, all at once) is printed too;
- median time of one ``list(limit=20)`` page and of ``url_for`` on S3.

With ``--file``: the file storage only (no SeaweedFS): save+load, then the
median time of a ``list(limit=20)`` page over stores of 1k, 10k and 100k images
(one image every 30 s going back from now, so 100k images span about 35 days),
the first page and pages at cursors spread through the store, as ratios against
the 1k store (goal: 100k/1k <= 1.5). The stores are written in the flat layout of
earlier versions, so the start-up migration into day/hour folders is timed too.

Run: ``.venv/bin/python bench/storage.py`` (about 30 s) or
``.venv/bin/python bench/storage.py --file`` (3-5 min). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.s3.seaweed, the test server launcher

from mcp_imagegen import ImageStorage, new_image_id  # noqa: E402
from mcp_imagegen._config import LoggingSettings  # noqa: E402
from mcp_imagegen._logs import configure_logging  # noqa: E402
from mcp_imagegen.testing import make_record  # noqa: E402
from mcp_imagegen_file.storage import FileStorage  # noqa: E402
from mcp_imagegen_s3 import S3Storage, S3StorageSettings  # noqa: E402
from tests.s3.seaweed import TEST_BUCKET, SeaweedServer  # noqa: E402

IMAGE_BYTES = 512 * 1024
ROUND_TRIPS = 40
CONCURRENT_SAVES = 64
REPEATS = 3
LIST_IMAGES = 200
#: Store sizes of the file listing benchmark, and the spacing of their images.
FILE_STORE_SIZES = (1_000, 10_000, 100_000)
FILE_SPACING_S = 30
PAGE = 20
PAGE_SAMPLES = 40
#: Round-trip time the proxy adds, like a remote S3 endpoint.
LATENCY = 0.020


def image_data(seed: int) -> bytes:
    # Incompressible, like an encoded image.
    return random.Random(seed).randbytes(IMAGE_BYTES)


async def median_ms(action: Callable[[int], Awaitable[object]], count: int) -> float:
    timings = []
    for i in range(count):
        started = time.perf_counter()
        await action(i)
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


async def save_load_ms(storage: ImageStorage) -> float:
    async def round_trip(i: int) -> None:
        record, data = make_record(image_data(i))
        await storage.save(record, data)
        loaded = await storage.load(record.id)
        assert loaded.data == data

    await round_trip(-1)  # warm-up: connections, caches
    return await median_ms(round_trip, ROUND_TRIPS)


async def saves_per_second(storage: ImageStorage, *, concurrent: bool) -> float:
    best = 0.0
    for repeat in range(REPEATS):
        items = [
            make_record(image_data(repeat * 1000 + i)) for i in range(CONCURRENT_SAVES)
        ]
        started = time.perf_counter()
        if concurrent:
            await asyncio.gather(
                *(storage.save(record, data) for record, data in items)
            )
        else:
            for record, data in items:
                await storage.save(record, data)
        best = max(best, CONCURRENT_SAVES / (time.perf_counter() - started))
    return best


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that delays every byte by ``rtt / 2`` each way.

    Bytes are forwarded in order at arrival time plus the delay (like a long
    cable), so latency is added without cutting bandwidth.
    """

    def __init__(self, target_port: int, rtt: float) -> None:
        self.target_port = target_port
        self.delay = rtt / 2
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> LatencyProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer),
                self._pipe(upstream_reader, client_writer),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            client_writer.close()  # the proxy is shutting down
        finally:
            self._tasks.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def forward() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(chunk)
                await writer.drain()
            writer.close()

        forwarder = asyncio.create_task(forward())
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((time.monotonic() + self.delay, chunk))
        finally:
            queue.put_nowait((0.0, b""))
            await forwarder


async def raw_saves_per_second(server: SeaweedServer) -> float:
    """The server's ceiling: 2 raw PUTs per image (image + record), all at once."""
    import aioboto3
    from botocore.config import Config

    table = server.storage_table()
    session = aioboto3.Session(
        aws_access_key_id=table["access_key_id"],
        aws_secret_access_key=table["secret_access_key"],
        region_name=table["region"],
    )
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=64,
    )
    best = 0.0
    async with session.client("s3", endpoint_url=server.endpoint, config=config) as s3:
        for repeat in range(REPEATS):
            bodies = [
                image_data(9000 + repeat * 100 + i) for i in range(CONCURRENT_SAVES)
            ]
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    s3.put_object(
                        Bucket=TEST_BUCKET, Key=f"bench-raw/{i}.{ext}", Body=b
                    )
                    for i, body in enumerate(bodies)
                    for ext, b in (("png", body), ("json", b"{}"))
                )
            )
            best = max(best, CONCURRENT_SAVES / (time.perf_counter() - started))
    return best


async def run(server: SeaweedServer, workdir: Path) -> None:
    async with FileStorage(FileStorage.Settings(directory=workdir / "images")) as files:
        file_ms = await save_load_ms(files)

    def s3_settings(prefix: str, **table: object) -> S3StorageSettings:
        return S3StorageSettings.model_validate(
            server.storage_table(prefix=prefix, **table)
        )

    async with S3Storage(s3_settings("bench-roundtrip")) as s3:
        s3_ms = await save_load_ms(s3)
    async with S3Storage(s3_settings("bench-sequential")) as s3:
        sequential = await saves_per_second(s3, concurrent=False)
    async with S3Storage(s3_settings("bench-concurrent")) as s3:
        concurrent = await saves_per_second(s3, concurrent=True)
    ceiling = await raw_saves_per_second(server)
    async with LatencyProxy(server.ports["s3"], rtt=LATENCY) as proxy:
        remote = s3_settings(
            "bench-remote", endpoint_url=f"http://127.0.0.1:{proxy.port}"
        )
        async with S3Storage(remote) as s3:
            remote_sequential = await saves_per_second(s3, concurrent=False)
            remote_concurrent = await saves_per_second(s3, concurrent=True)
    async with S3Storage(s3_settings("bench-list")) as s3:
        small = [make_record() for _ in range(LIST_IMAGES)]
        await asyncio.gather(*(s3.save(record, data) for record, data in small))
        list_ms = await median_ms(lambda i: s3.list(limit=20), 20)
    async with S3Storage(s3_settings("bench-list")) as s3:  # fresh: nothing cached
        ids = [record.id for record, _ in small]
        url_cold_ms = await median_ms(lambda i: s3.url_for(ids[i]), 20)
        url_warm_ms = await median_ms(lambda i: s3.url_for(ids[i]), 20)

    n = CONCURRENT_SAVES
    rtt = f"{LATENCY * 1000:.0f} ms RTT"
    print(f"storage benchmark ({IMAGE_BYTES // 1024} KB images, SeaweedFS on loopback)")
    print(f"  save+load median, file storage:   {file_ms:7.2f} ms (baseline)")
    print(
        f"  save+load median, S3 storage:     {s3_ms:7.2f} ms "
        f"({s3_ms / file_ms:.1f}x the file storage)"
    )
    print(f"  {n} saves, loopback, one by one:  {sequential:7.1f} saves/s (baseline)")
    print(
        f"  {n} saves, loopback, concurrent:   {concurrent:7.1f} saves/s "
        f"({concurrent / sequential:.1f}x)"
    )
    print(
        f"    the server's ceiling here: raw aiobotocore PUTs of the same objects, "
        f"all at once: {ceiling:.1f} saves/s"
    )
    print(
        f"  {n} saves, {rtt}, one by one: {remote_sequential:7.1f} saves/s (baseline)"
    )
    print(
        f"  {n} saves, {rtt}, concurrent:  {remote_concurrent:7.1f} saves/s "
        f"({remote_concurrent / remote_sequential:.1f}x; goal >= 4x)"
    )
    print(f"  S3 list(limit=20) of {LIST_IMAGES} images:     {list_ms:7.2f} ms median")
    print(
        f"  S3 url_for, record not cached:    {url_cold_ms:7.2f} ms median; "
        f"cached: {url_warm_ms:.2f} ms"
    )


def write_flat_store(directory: Path, count: int) -> None:
    """``count`` small images in the flat layout of earlier versions, fast (no
    fsync: this only sets up the store whose listing is timed)."""
    directory.mkdir(parents=True)
    record, data = make_record()
    now = time.time()
    for i in range(count):
        moment = now - i * FILE_SPACING_S
        image_id = new_image_id(datetime.fromtimestamp(moment, UTC))
        copy = record.model_copy(update={"id": image_id})
        (directory / f"{image_id}.png").write_bytes(data)
        (directory / f"{image_id}.json").write_text(copy.model_dump_json(indent=2))


async def page_cursors(storage: FileStorage, count: int) -> list[str]:
    """Cursors spread through the store, from one walk with big pages."""
    cursors: list[str] = []
    cursor = None
    while True:
        page = await storage.list(limit=100, cursor=cursor)
        cursor = page.next_cursor
        if cursor is None:
            break
        cursors.append(cursor)
    assert len(cursors) >= count // 100 - 1
    return random.Random(count).sample(cursors, min(PAGE_SAMPLES, len(cursors)))


async def timed_ms(action: Awaitable[object]) -> float:
    started = time.perf_counter()
    await action
    return (time.perf_counter() - started) * 1000


class OneThreadCallReads(FileStorage):
    """Baseline for aiofiles: each file read as one worker-thread call, as the
    storage did before (aiofiles makes open, read and close one call each)."""

    async def _read(self, path: Path, image_id: str, limit: int = -1) -> bytes:
        def read() -> bytes:
            with path.open("rb") as handle:
                return handle.read(limit)

        return await anyio.to_thread.run_sync(read)


async def aiofiles_vs_threads(workdir: Path) -> tuple[float, float]:
    """Median save+load with aiofiles and with one thread call per read,
    interleaved so both see the same load."""
    timings: dict[type[FileStorage], list[float]] = {}
    async with contextlib.AsyncExitStack() as stack:
        storages = [
            await stack.enter_async_context(
                kind(FileStorage.Settings(directory=workdir / kind.__name__))
            )
            for kind in (OneThreadCallReads, FileStorage)
        ]
        for i in range(ROUND_TRIPS * 2):
            for storage in storages:
                record, data = make_record(image_data(i))
                started = time.perf_counter()
                await storage.save(record, data)
                assert (await storage.load(record.id)).data == data
                elapsed = (time.perf_counter() - started) * 1000
                timings.setdefault(type(storage), []).append(elapsed)
    return (
        statistics.median(timings[OneThreadCallReads]),
        statistics.median(timings[FileStorage]),
    )


async def run_file(workdir: Path) -> None:
    threads_ms, aiofiles_ms = await aiofiles_vs_threads(workdir)
    print(f"file storage benchmark ({IMAGE_BYTES // 1024} KB images)")
    print(f"  save+load median, reads as one thread call each: {threads_ms:6.2f} ms")
    print(
        f"  save+load median, reads through aiofiles:         {aiofiles_ms:6.2f} ms "
        f"({aiofiles_ms / threads_ms:.2f}x)"
    )
    async with contextlib.AsyncExitStack() as stack:
        stores: dict[int, tuple[FileStorage, list[str]]] = {}
        migrate_ms: dict[int, float] = {}
        for count in FILE_STORE_SIZES:
            directory = workdir / f"store-{count}"
            await asyncio.to_thread(write_flat_store, directory, count)
            started = time.perf_counter()
            storage = FileStorage(FileStorage.Settings(directory=directory))
            await stack.enter_async_context(storage)
            migrate_ms[count] = (time.perf_counter() - started) * 1000
            stores[count] = (storage, await page_cursors(storage, count))
        # Interleaved rounds, so load from other processes hits every size alike.
        first: dict[int, list[float]] = {count: [] for count in stores}
        deep: dict[int, list[float]] = {count: [] for count in stores}
        for i in range(PAGE_SAMPLES):
            for count, (storage, cursors) in stores.items():
                first[count].append(await timed_ms(storage.list(limit=PAGE)))
                cursor = cursors[i % len(cursors)]
                deep[count].append(
                    await timed_ms(storage.list(limit=PAGE, cursor=cursor))
                )
    # A restart: nothing left to move, only the start-up sweep of leftovers.
    restart_ms = {}
    for count in FILE_STORE_SIZES:
        settings = FileStorage.Settings(directory=workdir / f"store-{count}")
        started = time.perf_counter()
        async with FileStorage(settings):
            restart_ms[count] = (time.perf_counter() - started) * 1000
    base = FILE_STORE_SIZES[0]
    base_first = statistics.median(first[base])
    base_deep = statistics.median(deep[base])
    print(f"  list(limit={PAGE}) page, one image every {FILE_SPACING_S} s, medians:")
    for count in FILE_STORE_SIZES:
        f = statistics.median(first[count])
        d = statistics.median(deep[count])
        print(
            f"    {count:>7} images: first page {f:6.2f} ms ({f / base_first:.2f}x), "
            f"page at a cursor {d:6.2f} ms ({d / base_deep:.2f}x)"
        )
    for count in FILE_STORE_SIZES:
        print(
            f"    {count:>7} images: first start (moving the flat layout) "
            f"{migrate_ms[count]:8.1f} ms, restart {restart_ms[count]:7.1f} ms"
        )
    print("  (ratios against the 1k store; goal: 100k/1k <= 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--file", action="store_true", help="file storage only: save+load, listing"
    )
    args = parser.parse_args()
    configure_logging(LoggingSettings(level="warning"))
    with tempfile.TemporaryDirectory(prefix="mcp-imagegen-bench-") as tmp:
        workdir = Path(tmp)
        if args.file:
            asyncio.run(run_file(workdir))
            return
        with SeaweedServer(workdir / "seaweed", buckets=(TEST_BUCKET,)) as server:
            asyncio.run(run(server, workdir))


if __name__ == "__main__":
    main()
