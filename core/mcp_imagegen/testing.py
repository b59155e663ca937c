"""The plugin-author kit: contract suites every component must pass, and helpers.

Like pytest's ``pytester``, this ships with the product so that a plugin's own
test suite checks it against the same rules the built-in plugins are held to:

- :class:`StorageContract` for an :class:`~mcp_imagegen.ImageStorage`
  (run over the built-in file and S3 storages),
- :class:`TaskStoreContract` for a :class:`~mcp_imagegen.TaskStore` (run over
  the file and S3 storages' task stores),
- :class:`BackendContract` for an :class:`~mcp_imagegen.InferenceBackend`
  (run over the placeholder backend),
- :class:`PostProcessorContract` for a :class:`~mcp_imagegen.PostProcessor`
  (run over the image-ops steps and the example ``border`` step),
- :func:`mcp_client`, an in-memory MCP client over a server built from a
  configuration dict, to test a plugin end to end through MCP.

Subclass a contract in a test module (the class name must start with ``Test``)
and provide its fixture. For a storage, a ``storage`` fixture that yields a
started, empty storage::

    import pytest
    from mcp_imagegen.testing import StorageContract
    from my_plugin import MyStorage

    class TestMyStorage(StorageContract):
        @pytest.fixture
        async def storage(self, tmp_path):
            async with MyStorage(MyStorage.Settings(root=tmp_path)) as storage:
                yield storage

A backend provides ``backend`` (and optionally ``failing_backend``), a step
provides ``step``; see each class.

Every contract test runs with anyio's pytest plugin (``-p anyio``, which pytest
loads automatically once anyio is installed) on asyncio. This module needs pytest
and is meant for test suites only.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import anyio
import anyio.lowlevel
import httpx
import pytest
from mcp import Client
from PIL import Image

from mcp_imagegen._ids import new_image_id, new_task_id
from mcp_imagegen._storagekit import encode_cursor
from mcp_imagegen.errors import (
    BackendError,
    ImageNotFoundError,
    InvalidImageIdError,
    PostProcessingError,
    ValidationError,
)
from mcp_imagegen.imaging import describe_image
from mcp_imagegen.interfaces import (
    ImageStorage,
    InferenceBackend,
    PostProcessor,
    TaskStore,
)
from mcp_imagegen.models import (
    Durations,
    GeneratedImage,
    GenerationRequest,
    ImageRecord,
    ProcessingContext,
    TaskRecord,
)

__all__ = [
    "INVALID_IMAGE_IDS",
    "INVALID_TASK_IDS",
    "BackendContract",
    "PostProcessorContract",
    "StorageContract",
    "TaskStoreContract",
    "fetch_url",
    "make_image_bytes",
    "make_record",
    "make_task_record",
    "make_task_result",
    "mcp_client",
    "save_many",
]

#: Strings that must never reach a path or key: traversal, separators, wrong case,
#: trailing newline, empty, overlong.
INVALID_IMAGE_IDS: tuple[str, ...] = (
    "",
    "..",
    "../../etc/passwd",
    "20261126T034442123-3f9a1c2b7d4e/../../x",
    "20261126T034442123-3f9a1c2b7d4e.json",
    "20261126T034442123-3F9A1C2B7D4E",
    "20261126T034442123-3f9a1c2b7d4e\n",
    "subdir/20261126T034442123-3f9a1c2b7d4e",
    "x" * 1000,
)

_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_PIL_FORMATS["image/gif"] = "GIF"


def make_image_bytes(
    mime_type: str = "image/png", *, seed: int = 0, side: int = 16
) -> bytes:
    """Return a small real image in ``mime_type``, different for each ``seed``."""
    rng = random.Random(seed)
    image = Image.new("RGB", (side, side), tuple(rng.randrange(256) for _ in range(3)))
    image.putpixel((0, 0), (seed % 256, (seed // 256) % 256, 7))
    buffer = io.BytesIO()
    image.save(buffer, format=_PIL_FORMATS[mime_type])
    return buffer.getvalue()


def make_record(
    data: bytes | None = None,
    *,
    created_at: datetime | None = None,
    image_id: str | None = None,
    mime_type: str = "image/png",
    **fields: Any,
) -> tuple[ImageRecord, bytes]:
    """Return a record and the bytes it describes.

    Args:
        data: The image bytes; a small real image of ``mime_type`` if omitted.
        created_at: Creation time; the id is made from it, as the server does.
        image_id: Force an id (it should encode ``created_at``).
        mime_type: The record's mime type.
        **fields: Any other :class:`ImageRecord` field.
    """
    created_at = created_at or datetime.now(UTC)
    image_id = image_id or new_image_id(created_at)
    if data is None:
        seed = int(hashlib.sha256(image_id.encode()).hexdigest()[:8], 16)
        data = make_image_bytes(mime_type, seed=seed)
    values: dict[str, Any] = {
        "id": image_id,
        "prompt": f"a test image {image_id}",
        "width": 16,
        "height": 16,
        "backend": "contract",
        "mime_type": mime_type,
        "byte_size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "created_at": created_at,
    }
    values.update(fields)
    return ImageRecord(**values), data


async def save_many(
    storage: ImageStorage,
    items: list[tuple[ImageRecord, bytes]],
    *,
    concurrency: int = 25,
) -> None:
    """Save ``items`` with at most ``concurrency`` saves in flight."""
    limiter = anyio.CapacityLimiter(concurrency)

    async def save(record: ImageRecord, data: bytes) -> None:
        async with limiter:
            await storage.save(record, data)

    async with anyio.create_task_group() as group:
        for record, data in items:
            group.start_soon(save, record, data)


async def fetch_url(url: str) -> bytes:
    """Return what ``url`` (``file://``, ``http://`` or ``https://``) points at."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(url2pathname(unquote(parts.path)))
        return await anyio.to_thread.run_sync(path.read_bytes)
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
        response.raise_for_status()
        return response.content


async def _all_pages(storage: ImageStorage, limit: int) -> list[list[ImageRecord]]:
    pages: list[list[ImageRecord]] = []
    cursor: str | None = None
    while True:
        page = await storage.list(limit=limit, cursor=cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            return pages
        assert len(pages) < 10_000, "list() keeps returning a next_cursor"
        cursor = page.next_cursor


def _ids(records: list[ImageRecord]) -> list[str]:
    return [record.id for record in records]


_STORAGE_METHODS: dict[str, Callable[[ImageStorage, str], Awaitable[Any]]] = {
    "load": lambda storage, image_id: storage.load(image_id),
    "get_record": lambda storage, image_id: storage.get_record(image_id),
    "delete": lambda storage, image_id: storage.delete(image_id),
    "url_for": lambda storage, image_id: storage.url_for(image_id),
}


class StorageContract:
    """Behaviour shared by every storage. Subclass it and provide ``storage``.

    Attributes:
        url_is_fetchable: Set to ``False`` if ``url_for`` returns links no test can
            open (e.g. a ``base_url`` served by a web server that is not running).
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]
    url_is_fetchable: ClassVar[bool] = True

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def storage(self) -> ImageStorage:
        raise NotImplementedError(
            "Provide a 'storage' fixture yielding a started, empty storage."
        )

    # -- save / load -------------------------------------------------------------

    async def test_save_then_load_returns_identical_bytes_and_record(
        self, storage: ImageStorage
    ) -> None:
        record, data = make_record()

        await storage.save(record, data)
        stored = await storage.load(record.id)

        assert stored.data == data
        assert stored.record == record

    async def test_get_record_returns_the_saved_record(
        self, storage: ImageStorage
    ) -> None:
        record, data = make_record()
        await storage.save(record, data)

        assert await storage.get_record(record.id) == record

    async def test_round_trip_keeps_every_record_field(
        self, storage: ImageStorage
    ) -> None:
        source, _ = make_record()
        record, data = make_record(
            negative_prompt="blurry, «low» quality ✓",
            seed=2**32 - 1,
            steps=30,
            guidance_scale=7.5,
            model="sdxl-turbo",
            parameters={"scheduler": "euler", "nested": {"a": [1, 2.5, True, None]}},
            postprocess=["resize", "watermark"],
            source_image_id=source.id,
            durations=Durations(generate_ms=1234.5, postprocess_ms=6.25, save_ms=3.0),
            created_at=datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=UTC),
        )

        await storage.save(record, data)

        assert await storage.get_record(record.id) == record

    @pytest.mark.parametrize(
        "mime_type", ["image/png", "image/jpeg", "image/webp", "image/gif"]
    )
    async def test_every_image_type_round_trips(
        self, storage: ImageStorage, mime_type: str
    ) -> None:
        record, data = make_record(mime_type=mime_type)

        await storage.save(record, data)
        stored = await storage.load(record.id)

        assert (stored.data, stored.record.mime_type) == (data, mime_type)

    async def test_large_image_round_trips_byte_identical(
        self, storage: ImageStorage
    ) -> None:
        data = random.Random(7).randbytes(3 * 1024 * 1024 + 17)
        record, _ = make_record(data)

        await storage.save(record, data)

        assert (await storage.load(record.id)).data == data

    async def test_fifty_concurrent_saves_are_all_stored_intact(
        self, storage: ImageStorage
    ) -> None:
        items = [make_record() for _ in range(50)]
        loaded: dict[str, tuple[ImageRecord, bytes]] = {}

        async def load(image_id: str) -> None:
            stored = await storage.load(image_id)
            loaded[image_id] = (stored.record, stored.data)

        async with anyio.create_task_group() as group:
            for record, data in items:
                group.start_soon(storage.save, record, data)
        async with anyio.create_task_group() as group:
            for record, _ in items:
                group.start_soon(load, record.id)

        assert [loaded[record.id] for record, _ in items] == items

    # -- not found / invalid ids -------------------------------------------------

    @pytest.mark.parametrize("method", sorted(_STORAGE_METHODS))
    async def test_unknown_id_raises_image_not_found(
        self, storage: ImageStorage, method: str
    ) -> None:
        unknown = new_image_id()

        with pytest.raises(ImageNotFoundError) as raised:
            await _STORAGE_METHODS[method](storage, unknown)

        assert raised.value.image_id == unknown

    @pytest.mark.parametrize("method", sorted(_STORAGE_METHODS))
    @pytest.mark.parametrize("bad_id", INVALID_IMAGE_IDS, ids=repr)
    async def test_invalid_id_is_rejected(
        self, storage: ImageStorage, method: str, bad_id: str
    ) -> None:
        with pytest.raises(InvalidImageIdError):
            await _STORAGE_METHODS[method](storage, bad_id)

    @pytest.mark.parametrize("bad_id", INVALID_IMAGE_IDS, ids=repr)
    async def test_save_rejects_record_with_invalid_id(
        self, storage: ImageStorage, bad_id: str
    ) -> None:
        record, data = make_record()
        bad = record.model_copy(update={"id": bad_id})

        with pytest.raises(InvalidImageIdError):
            await storage.save(bad, data)

        assert (await storage.list()).items == []

    # -- list --------------------------------------------------------------------

    async def test_empty_storage_lists_nothing(self, storage: ImageStorage) -> None:
        page = await storage.list()

        assert (page.items, page.next_cursor) == ([], None)

    async def test_list_returns_records_newest_first(
        self, storage: ImageStorage
    ) -> None:
        now = datetime.now(UTC)
        items = [make_record(created_at=now - timedelta(seconds=i)) for i in (3, 1, 2)]
        await save_many(storage, items)

        page = await storage.list(limit=10)

        assert _ids(page.items) == sorted((r.id for r, _ in items), reverse=True)
        assert page.items[0] == max((r for r, _ in items), key=lambda r: r.id)
        assert page.next_cursor is None

    async def test_list_stops_at_limit_and_cursor_resumes_after_it(
        self, storage: ImageStorage
    ) -> None:
        now = datetime.now(UTC)
        items = [make_record(created_at=now - timedelta(minutes=i)) for i in range(5)]
        await save_many(storage, items)
        expected = sorted((r.id for r, _ in items), reverse=True)

        first = await storage.list(limit=2)
        assert first.next_cursor is not None
        second = await storage.list(limit=2, cursor=first.next_cursor)

        assert _ids(first.items) == expected[:2]
        assert _ids(second.items) == expected[2:4]

    async def test_last_page_has_no_cursor_when_count_is_a_multiple_of_limit(
        self, storage: ImageStorage
    ) -> None:
        await save_many(storage, [make_record() for _ in range(6)])

        pages = await _all_pages(storage, limit=3)

        assert [len(page) for page in pages] == [3, 3]

    async def test_pagination_over_250_images_yields_each_once_newest_first(
        self, storage: ImageStorage
    ) -> None:
        now = datetime.now(UTC)
        # Spread over seconds, with several images in the same millisecond.
        moments = [now - timedelta(milliseconds=37 * (i // 3)) for i in range(250)]
        items = [make_record(created_at=moment) for moment in moments]
        await save_many(storage, items)
        expected = sorted((r.id for r, _ in items), reverse=True)

        pages = await _all_pages(storage, limit=20)

        assert [len(page) for page in pages] == [20] * 12 + [10]
        assert [i for page in pages for i in _ids(page)] == expected

    async def test_list_orders_images_spread_over_a_century(
        self, storage: ImageStorage
    ) -> None:
        moments = [
            datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
            datetime(2000, 1, 1, tzinfo=UTC),
            datetime(2012, 6, 1, 12, tzinfo=UTC),
            datetime.now(UTC) - timedelta(days=400),
            datetime.now(UTC) - timedelta(hours=5),
            datetime.now(UTC) - timedelta(seconds=1),
            datetime.now(UTC) + timedelta(days=3),
            datetime(2099, 1, 1, tzinfo=UTC),
        ]
        items = [make_record(created_at=moment) for moment in moments for _ in (0, 1)]
        await save_many(storage, items)

        pages = await _all_pages(storage, limit=3)

        ids = [i for page in pages for i in _ids(page)]
        assert ids == sorted((r.id for r, _ in items), reverse=True)

    @pytest.mark.parametrize("cursor", ["garbage", "!!!", "aGVsbG8", "x" * 300])
    async def test_list_rejects_a_cursor_it_did_not_issue(
        self, storage: ImageStorage, cursor: str
    ) -> None:
        await storage.save(*make_record())

        with pytest.raises(ValidationError):
            await storage.list(limit=5, cursor=cursor)

    @pytest.mark.parametrize("limit", [0, -1])
    async def test_list_rejects_a_limit_below_one(
        self, storage: ImageStorage, limit: int
    ) -> None:
        await storage.save(*make_record())

        with pytest.raises(ValidationError):
            await storage.list(limit=limit)

    async def test_list_skips_records_deleted_while_it_reads(
        self, storage: ImageStorage
    ) -> None:
        items = [make_record() for _ in range(40)]
        await save_many(storage, items)
        saved = {record.id: record for record, _ in items}
        pages: list[list[ImageRecord]] = []

        async def list_repeatedly() -> None:
            for _ in range(40):
                pages.append((await storage.list(limit=40)).items)

        async def delete_all() -> None:
            for record, _ in items:
                await storage.delete(record.id)

        # Deletes land between a listing and the reads of the records it found;
        # a page holds what still exists, never an error.
        async with anyio.create_task_group() as group:
            group.start_soon(list_repeatedly)
            group.start_soon(delete_all)

        for page in pages:
            assert all(saved[record.id] == record for record in page)
        assert (await storage.list(limit=40)).items == []

    # -- delete ------------------------------------------------------------------

    async def test_delete_removes_image_and_record(self, storage: ImageStorage) -> None:
        record, data = make_record()
        await storage.save(record, data)

        await storage.delete(record.id)

        with pytest.raises(ImageNotFoundError):
            await storage.load(record.id)
        with pytest.raises(ImageNotFoundError):
            await storage.get_record(record.id)
        assert (await storage.list()).items == []

    async def test_deleting_twice_raises_image_not_found(
        self, storage: ImageStorage
    ) -> None:
        record, data = make_record()
        await storage.save(record, data)
        await storage.delete(record.id)

        with pytest.raises(ImageNotFoundError):
            await storage.delete(record.id)

    async def test_delete_leaves_other_images_alone(
        self, storage: ImageStorage
    ) -> None:
        items = [make_record() for _ in range(3)]
        await save_many(storage, items)

        await storage.delete(items[1][0].id)

        remaining = await storage.list()
        assert sorted(_ids(remaining.items)) == sorted([items[0][0].id, items[2][0].id])
        assert (await storage.load(items[0][0].id)).data == items[0][1]

    async def test_delete_expired_removes_only_older_images_and_counts_them(
        self, storage: ImageStorage
    ) -> None:
        now = datetime.now(UTC)
        old = [make_record(created_at=now - timedelta(days=d)) for d in (2, 3, 400)]
        fresh = [make_record(created_at=now - timedelta(hours=h)) for h in (0, 1, 23)]
        await save_many(storage, old + fresh)

        deleted = await storage.delete_expired(now - timedelta(days=1))

        assert deleted == 3
        listed = await storage.list(limit=50)
        assert sorted(_ids(listed.items)) == sorted(r.id for r, _ in fresh)
        for record, _ in old:
            with pytest.raises(ImageNotFoundError):
                await storage.load(record.id)

    async def test_delete_expired_keeps_an_image_created_exactly_at_the_cutoff(
        self, storage: ImageStorage
    ) -> None:
        moment = datetime(2030, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)
        record, data = make_record(created_at=moment)
        await storage.save(record, data)

        kept = await storage.delete_expired(moment)
        deleted = await storage.delete_expired(moment + timedelta(microseconds=1))

        assert (kept, deleted) == (0, 1)

    async def test_delete_expired_takes_a_naive_cutoff_as_utc(
        self, storage: ImageStorage
    ) -> None:
        moment = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
        await storage.save(*make_record(created_at=moment))

        deleted = await storage.delete_expired(
            (moment + timedelta(seconds=1)).replace(tzinfo=None)
        )

        assert deleted == 1

    async def test_delete_expired_with_nothing_old_returns_zero(
        self, storage: ImageStorage
    ) -> None:
        await storage.save(*make_record())

        assert await storage.delete_expired(datetime.now(UTC) - timedelta(days=1)) == 0
        assert len((await storage.list()).items) == 1

    # -- leftovers of interrupted saves -------------------------------------------

    async def plant_leftovers(self, storage: ImageStorage) -> int:
        """Leave behind what interrupted saves leave, and return how many leftovers.

        Override it in a storage's test class: write, the way the storage itself
        would, what a save killed half-way leaves (a temporary file, an image
        without its record, ...). The default skips the leftover tests.
        """
        pytest.skip(
            f"{type(self).__name__} does not override plant_leftovers(), so the "
            "remove_orphans tests cannot plant what an interrupted save leaves."
        )

    async def _plant_among_complete_images(
        self, storage: ImageStorage
    ) -> tuple[int, list[tuple[ImageRecord, bytes]]]:
        before = [make_record() for _ in range(3)]
        await save_many(storage, before)
        planted = await self.plant_leftovers(storage)
        after = [make_record() for _ in range(2)]
        await save_many(storage, after)
        assert planted > 0, "plant_leftovers() must plant at least one leftover"
        return planted, before + after

    async def test_remove_orphans_removes_exactly_the_leftovers(
        self, storage: ImageStorage
    ) -> None:
        planted, complete = await self._plant_among_complete_images(storage)

        removed = await storage.remove_orphans(datetime.now(UTC) + timedelta(seconds=1))

        assert removed == planted
        listed = await storage.list(limit=50)
        assert sorted(_ids(listed.items)) == sorted(r.id for r, _ in complete)
        for record, data in complete:
            assert (await storage.load(record.id)).data == data

    async def test_a_second_orphan_sweep_finds_nothing(
        self, storage: ImageStorage
    ) -> None:
        await self._plant_among_complete_images(storage)
        await storage.remove_orphans(datetime.now(UTC) + timedelta(seconds=1))

        again = await storage.remove_orphans(datetime.now(UTC) + timedelta(seconds=1))

        assert again == 0

    async def test_remove_orphans_spares_leftovers_younger_than_the_cutoff(
        self, storage: ImageStorage
    ) -> None:
        planted, complete = await self._plant_among_complete_images(storage)

        # A save still in progress looks like a leftover: the grace protects it.
        spared = await storage.remove_orphans(datetime.now(UTC) - timedelta(hours=1))
        later = await storage.remove_orphans(datetime.now(UTC) + timedelta(seconds=1))

        assert (spared, later) == (0, planted)
        listed = await storage.list(limit=50)
        assert sorted(_ids(listed.items)) == sorted(r.id for r, _ in complete)

    # -- url_for / lifecycle -------------------------------------------------------

    async def test_url_for_gives_a_link_to_the_image_bytes(
        self, storage: ImageStorage
    ) -> None:
        record, data = make_record()
        await storage.save(record, data)

        url = await storage.url_for(record.id)

        assert urlsplit(url).scheme in ("file", "http", "https")
        if self.url_is_fetchable:
            assert await fetch_url(url) == data

    async def test_url_for_a_deleted_image_raises_image_not_found(
        self, storage: ImageStorage
    ) -> None:
        record, data = make_record()
        await storage.save(record, data)
        await storage.url_for(record.id)
        await storage.delete(record.id)

        with pytest.raises(ImageNotFoundError):
            await storage.url_for(record.id)

    async def test_aclose_can_be_called_twice(self, storage: ImageStorage) -> None:
        await storage.aclose()
        await storage.aclose()


# -- task stores -------------------------------------------------------------------

#: Strings that must never reach a task store's path or key.
INVALID_TASK_IDS: tuple[str, ...] = (
    "",
    "..",
    "../x",
    "../../etc/passwd",
    "20261126T034442123-" + "0" * 32 + "/../x",
    "20261126T034442123-" + "0" * 32 + ".json",
    "20261126T034442123-" + "A" * 32,
    "20261126T034442123-" + "0" * 32 + "\n",
    "20261126T034442123-3f9a1c2b7d4e",  # an image id
    "x" * 1000,
)


def make_task_record(
    *,
    created_at: datetime | None = None,
    task_id: str | None = None,
    owner: str | None = None,
    ttl_ms: int = 3_600_000,
    **fields: Any,
) -> TaskRecord:
    """Return a ``working`` task record created at ``created_at`` (default: now).

    Args:
        created_at: Creation time; the id is made from it, as the server does.
        task_id: Force an id (it should encode ``created_at``).
        owner: The principal that created the task.
        ttl_ms: Lifetime after ``created_at``.
        **fields: Any other :class:`TaskRecord` field.
    """
    created_at = created_at or datetime.now(UTC)
    values: dict[str, Any] = {
        "task_id": new_task_id(created_at) if task_id is None else task_id,
        "owner": owner,
        "tool": "generate_image",
        "created_at": created_at,
        "updated_at": created_at,
        "ttl_ms": ttl_ms,
        "poll_interval_ms": 500,
        "runner": "contract-runner",
        "heartbeat_at": created_at,
    }
    values.update(fields)
    return TaskRecord(**values)


def make_task_result(size: int = 16, *, seed: int = 0) -> dict[str, Any]:
    """A ``CallToolResult`` as JSON holding ``size`` random bytes as an image."""
    data = base64.b64encode(random.Random(seed).randbytes(size)).decode()
    return {
        "content": [{"type": "image", "data": data, "mimeType": "image/png"}],
        "structuredContent": {"images": [{"id": new_image_id(), "seed": seed}]},
        "isError": False,
    }


async def _all_task_pages(
    store: TaskStore, owner: str | None, limit: int
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.list(owner, limit=limit, cursor=cursor)
        pages.append([record.task_id for record in page.items])
        if page.next_cursor is None:
            return pages
        assert len(pages) < 1000, "list() keeps returning a next_cursor"
        cursor = page.next_cursor


_TASK_METHODS: dict[str, Callable[[TaskStore, str], Awaitable[Any]]] = {
    "put": lambda store, task_id: store.put(make_task_record(task_id=task_id)),
    "get": lambda store, task_id: store.get(task_id),
    "delete": lambda store, task_id: store.delete(task_id),
    "request_cancel": lambda store, task_id: store.request_cancel(task_id),
    "cancel_requested": lambda store, task_id: store.cancel_requested(task_id),
}


class TaskStoreContract:
    """Behaviour shared by every task store. Subclass it and provide ``store``.

    ``store`` yields a started, empty :class:`~mcp_imagegen.TaskStore`. A store
    that replicas share provides ``replica`` too: a second instance over the same
    backing storage (the same directory, bucket and prefix), as another server
    process would open it; without it, the cross-replica tests are skipped::

        class TestMyTaskStore(TaskStoreContract):
            @pytest.fixture
            async def store(self, tmp_path):
                async with MyStorage(MyStorage.Settings(root=tmp_path)) as storage:
                    yield storage.task_store()
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def store(self) -> TaskStore:
        raise NotImplementedError(
            "Provide a 'store' fixture yielding a started, empty task store."
        )

    @pytest.fixture
    def replica(self) -> TaskStore:
        pytest.skip(
            f"{type(self).__name__} provides no 'replica' fixture (a second store "
            "over the same backing storage), so sharing is not checked."
        )

    # -- put / get ---------------------------------------------------------------

    async def test_put_then_get_keeps_every_field(self, store: TaskStore) -> None:
        moment = datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
        record = make_task_record(
            created_at=datetime.now(UTC),
            owner="user «ü» ✓ with spaces",
            tool="transform_image",
            status="completed",
            status_message="image 2/4: step 18/30",
            updated_at=moment,
            heartbeat_at=moment.astimezone(timezone(timedelta(hours=2))),
            ttl_ms=7_200_000,
            poll_interval_ms=1234,
            runner="replica-b:4242",
            result=make_task_result(seed=3),
        )

        await store.put(record)
        stored = await store.get(record.task_id)

        assert stored == record
        assert stored is not None
        for moment_of in (stored.created_at, stored.updated_at, stored.heartbeat_at):
            assert moment_of.utcoffset() is not None, "a time came back naive"

    async def test_get_of_an_absent_task_is_none(self, store: TaskStore) -> None:
        assert await store.get(new_task_id()) is None

    async def test_put_replaces_the_record(self, store: TaskStore) -> None:
        record = make_task_record()
        done = record.model_copy(
            update={"status": "completed", "result": make_task_result(seed=1)}
        )

        await store.put(record)
        await store.put(done)

        assert await store.get(record.task_id) == done

    async def test_a_concurrent_reader_sees_the_old_or_the_new_record(
        self, store: TaskStore
    ) -> None:
        # Large results, so a write that is not atomic is caught half way.
        old = make_task_record(result=make_task_result(512 * 1024, seed=1))
        new = old.model_copy(
            update={
                "status": "completed",
                "result": make_task_result(768 * 1024, seed=2),
            }
        )
        await store.put(old)
        seen: list[TaskRecord | None] = []

        async def write() -> None:
            for i in range(8):
                await store.put(new if i % 2 == 0 else old)

        async def read() -> None:
            for _ in range(12):
                seen.append(await store.get(old.task_id))

        async with anyio.create_task_group() as group:
            group.start_soon(write)
            group.start_soon(read)
            group.start_soon(read)

        assert len(seen) == 24
        assert all(record in (old, new) for record in seen)

    async def test_a_record_with_a_large_result_round_trips(
        self, store: TaskStore
    ) -> None:
        record = make_task_record(
            status="completed", result=make_task_result(3 * 1024 * 1024 + 7, seed=9)
        )

        await store.put(record)

        assert await store.get(record.task_id) == record

    async def test_an_expired_record_is_gone(self, store: TaskStore) -> None:
        created = datetime.now(UTC) - timedelta(hours=2)
        expired = make_task_record(created_at=created, ttl_ms=3_600_000)
        alive = make_task_record(created_at=created, ttl_ms=3 * 3_600_000)
        await store.put(expired)
        await store.put(alive)

        assert await store.get(expired.task_id) is None
        assert await store.get(alive.task_id) == alive
        listed = await store.list(None)
        assert [r.task_id for r in listed.items] == [alive.task_id]

    # -- list --------------------------------------------------------------------

    async def test_an_empty_store_lists_nothing(self, store: TaskStore) -> None:
        page = await store.list(None)

        assert (page.items, page.next_cursor) == ([], None)

    async def test_list_is_newest_first_and_only_the_owners(
        self, store: TaskStore
    ) -> None:
        now = datetime.now(UTC)
        records = [
            make_task_record(created_at=now - timedelta(seconds=i), owner=owner)
            for i, owner in enumerate(["alice", None, "bob", "alice", None, "alice"])
        ]
        for record in random.Random(5).sample(records, len(records)):
            await store.put(record)

        for owner in ("alice", "bob", None):
            page = await store.list(owner)
            expected = sorted(
                (r.task_id for r in records if r.owner == owner), reverse=True
            )
            assert [r.task_id for r in page.items] == expected, owner
            assert page.next_cursor is None
        assert (await store.list("mallory")).items == []

    async def test_paging_yields_each_task_once_newest_first(
        self, store: TaskStore
    ) -> None:
        now = datetime.now(UTC)
        mine = [
            make_task_record(created_at=now - timedelta(milliseconds=7 * i), owner="a")
            for i in range(11)
        ]
        others = [make_task_record(owner="b") for _ in range(4)]
        for record in mine + others:
            await store.put(record)

        pages = await _all_task_pages(store, "a", limit=4)

        assert [len(page) for page in pages] == [4, 4, 3]
        ids = [task_id for page in pages for task_id in page]
        assert ids == sorted((r.task_id for r in mine), reverse=True)

    async def test_the_last_page_has_no_cursor_when_full(
        self, store: TaskStore
    ) -> None:
        for _ in range(6):
            await store.put(make_task_record(owner="a"))

        pages = await _all_task_pages(store, "a", limit=3)

        assert [len(page) for page in pages] == [3, 3]

    @pytest.mark.parametrize(
        "cursor",
        [
            "not a cursor",
            "!!!",
            encode_cursor(new_image_id()),
            encode_cursor(new_image_id(), tag="s3:"),
            encode_cursor("../x"),
        ],
    )
    async def test_a_foreign_cursor_is_a_validation_error(
        self, store: TaskStore, cursor: str
    ) -> None:
        await store.put(make_task_record())

        with pytest.raises(ValidationError):
            await store.list(None, cursor=cursor)

    async def test_a_limit_below_one_is_a_validation_error(
        self, store: TaskStore
    ) -> None:
        with pytest.raises(ValidationError):
            await store.list(None, limit=0)

    # -- delete / cancel ---------------------------------------------------------

    async def test_delete_forgets_the_task_and_its_cancel_request(
        self, store: TaskStore
    ) -> None:
        record = make_task_record()
        await store.put(record)
        await store.request_cancel(record.task_id)

        await store.delete(record.task_id)
        await store.delete(record.task_id)  # idempotent

        assert await store.get(record.task_id) is None
        assert await store.cancel_requested(record.task_id) is False
        assert (await store.list(None)).items == []

    async def test_delete_of_an_absent_task_is_no_error(self, store: TaskStore) -> None:
        await store.delete(new_task_id())

    async def test_cancel_is_requested_only_for_its_task(
        self, store: TaskStore
    ) -> None:
        first, second = make_task_record(), make_task_record()
        await store.put(first)
        await store.put(second)
        assert await store.cancel_requested(first.task_id) is False

        await store.request_cancel(first.task_id)
        await store.request_cancel(first.task_id)  # twice is once

        assert await store.cancel_requested(first.task_id) is True
        assert await store.cancel_requested(second.task_id) is False
        # The request is a separate mark: the record is unchanged by it.
        assert await store.get(first.task_id) == first

    async def test_a_replica_sees_records_and_cancel_requests(
        self, store: TaskStore, replica: TaskStore
    ) -> None:
        record = make_task_record(owner="alice")
        await store.put(record)

        assert await replica.get(record.task_id) == record
        await replica.request_cancel(record.task_id)
        assert await store.cancel_requested(record.task_id) is True
        done = record.model_copy(update={"status": "cancelled"})
        await store.put(done)
        assert (await replica.list("alice")).items == [done]
        await replica.delete(record.task_id)
        assert await store.get(record.task_id) is None
        assert await store.cancel_requested(record.task_id) is False

    # -- expiry ------------------------------------------------------------------

    async def test_delete_expired_counts_and_keeps_live_tasks(
        self, store: TaskStore
    ) -> None:
        now = datetime.now(UTC)
        expired = [
            make_task_record(created_at=now - timedelta(hours=2), ttl_ms=60_000)
            for _ in range(3)
        ]
        live = [
            make_task_record(created_at=now - timedelta(hours=2), ttl_ms=3 * 3_600_000),
            make_task_record(owner="bob"),
        ]
        for record in expired + live:
            await store.put(record)
        await store.request_cancel(expired[0].task_id)
        await store.request_cancel(live[0].task_id)

        assert await store.delete_expired(now) == 3
        assert await store.delete_expired(now) == 0

        for record in live:
            assert await store.get(record.task_id) == record
        assert await store.cancel_requested(live[0].task_id) is True
        assert await store.cancel_requested(expired[0].task_id) is False
        # Later, the live ones expire too.
        later = now + timedelta(hours=2)
        assert await store.delete_expired(later) == 2

    # -- ids ---------------------------------------------------------------------

    @pytest.mark.parametrize("method", sorted(_TASK_METHODS))
    @pytest.mark.parametrize("bad_id", INVALID_TASK_IDS, ids=repr)
    async def test_a_malformed_id_is_refused(
        self, store: TaskStore, method: str, bad_id: str
    ) -> None:
        with pytest.raises(ValidationError):
            await _TASK_METHODS[method](store, bad_id)

        assert (await store.list(None)).items == []

    async def test_aclose_can_be_called_twice(self, store: TaskStore) -> None:
        await store.aclose()
        await store.aclose()


# -- MCP end to end ----------------------------------------------------------------


@asynccontextmanager
async def mcp_client(
    config: Mapping[str, Any], *, plugins: Mapping[str, object] | None = None
) -> AsyncIterator[Client]:
    """Serve a server built from ``config`` to an in-memory MCP client.

    The server is built exactly as ``mcp-imagegen serve`` builds it, from the
    installed plugins (entry points), but from ``config`` alone: no configuration
    file and no ``MCP_IMAGEGEN_*`` environment variable is read. Its components
    start when the client connects and stop when the block ends::

        async with mcp_client({"storage": {"file": {"directory": str(tmp_path)}}}) as c:
            result = await c.call_tool("generate_image", {"prompt": "a fox"})

    Args:
        config: A mapping shaped like the TOML file. Point the storage at a
            temporary directory (``storage.file.directory``) in tests.
        plugins: Extra plugins to register inline, ``{name: module or object with
            hookimpls}``; handy to test a plugin before it is installed.

    Yields:
        A connected ``mcp.Client``.

    Raises:
        ConfigurationError: if ``config`` is invalid or names an unknown component.
    """
    # The composition root is internal; it is called in this one place only.
    from mcp_imagegen._app import create_server
    from mcp_imagegen._config import settings_from_dict
    from mcp_imagegen._plugins import load_plugins

    settings = settings_from_dict(config)
    manager = load_plugins(settings.plugins.disabled)
    for name, plugin in (plugins or {}).items():
        manager.register(plugin, name=name)
    async with Client(create_server(settings, manager)) as client:
        yield client


# -- backends ----------------------------------------------------------------------


class _ProgressLog:
    """A progress reporter that records every report."""

    def __init__(self, on_report: Callable[[], None] | None = None) -> None:
        self.reports: list[tuple[float, float | None]] = []
        self.on_report = on_report

    async def __call__(
        self, done: float, total: float | None = None, message: str | None = None
    ) -> None:
        self.reports.append((done, total))
        if self.on_report is not None:
            self.on_report()
        await anyio.lowlevel.checkpoint()


class BackendContract:
    """Behaviour shared by every inference backend. Subclass it, provide ``backend``.

    ``backend`` yields a started backend that can serve requests; the contract
    sizes its requests from the backend's own :class:`~mcp_imagegen.Capabilities`
    (seed tests run only when it declares ``supports_seed``). Provide
    ``failing_backend`` too — a started backend whose server fails (answers
    errors, or is not there) — to check that failures surface as
    :class:`~mcp_imagegen.BackendError`; without it, that test is skipped::

        class TestMyBackend(BackendContract):
            @pytest.fixture
            async def backend(self, my_server_url):
                settings = MyBackend.Settings(url=my_server_url)
                async with MyBackend(settings) as backend:
                    yield backend

    Attributes:
        prompt: The prompt of every contract request.
        reports_progress: Set to ``False`` if the backend cannot report progress
            (the progress and cancellation tests then only check what it does).
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]
    prompt: ClassVar[str] = "a lighthouse on a cliff at dusk (contract test)"
    reports_progress: ClassVar[bool] = True

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def backend(self) -> InferenceBackend:
        raise NotImplementedError(
            "Provide a 'backend' fixture yielding a started backend."
        )

    @pytest.fixture
    def failing_backend(self) -> InferenceBackend:
        pytest.skip(
            f"{type(self).__name__} provides no 'failing_backend' fixture (a started "
            "backend whose server fails), so error mapping is not checked."
        )

    def request_for(
        self, backend: InferenceBackend, **fields: Any
    ) -> GenerationRequest:
        """Return a small valid request for ``backend``: not square, seeded.

        Override it to add what your backend needs (a model name, parameters).
        """
        caps = backend.capabilities
        step = caps.side_multiple
        side = -(-max(caps.min_side, 64) // step) * step
        taller = side + step if side + step <= caps.max_side else side
        values: dict[str, Any] = {
            "prompt": self.prompt,
            "width": side,
            "height": taller,
            "num_images": min(2, caps.max_images),
            "seed": 1234,
        }
        if caps.supports_steps:
            values["steps"] = 2
        values.update(fields)
        return GenerationRequest(**values)

    async def test_generate_returns_num_images_of_the_requested_size(
        self, backend: InferenceBackend
    ) -> None:
        request = self.request_for(backend)

        images = await backend.generate(request, _ProgressLog())

        assert len(images) == request.num_images
        for image in images:
            # The bytes are a complete image of the declared type and size.
            declared = (image.mime_type, image.width, image.height)
            assert describe_image(image.data) == declared
            assert (image.width, image.height) == (request.width, request.height)
            assert image.mime_type in backend.capabilities.output_mime_types

    async def test_each_image_uses_the_seed_of_its_index(
        self, backend: InferenceBackend
    ) -> None:
        if not backend.capabilities.supports_seed:
            pytest.skip("the backend declares supports_seed = False")
        request = self.request_for(backend, seed=2**32 - 1)

        images = await backend.generate(request, _ProgressLog())

        assert [image.seed for image in images] == [
            request.seed_for(i) for i in range(request.num_images)
        ]

    async def test_the_same_seed_twice_gives_the_same_bytes(
        self, backend: InferenceBackend
    ) -> None:
        if not backend.capabilities.supports_seed:
            pytest.skip("the backend declares supports_seed = False")
        request = self.request_for(backend, num_images=1)

        [first] = await backend.generate(request, _ProgressLog())
        [second] = await backend.generate(request, _ProgressLog())

        assert first.data == second.data

    async def test_progress_is_reported_monotonically(
        self, backend: InferenceBackend
    ) -> None:
        progress = _ProgressLog()

        await backend.generate(self.request_for(backend), progress)

        if self.reports_progress:
            assert progress.reports, "generate() never reported progress"
        done = [d for d, _ in progress.reports]
        assert done == sorted(done), f"progress went backwards: {progress.reports}"
        for d, total in progress.reports:
            assert d >= 0
            assert total is None or d <= total, progress.reports

    async def test_a_failing_server_raises_a_backend_error_naming_the_instance(
        self, failing_backend: InferenceBackend
    ) -> None:
        with pytest.raises(BackendError) as raised:
            await failing_backend.generate(
                self.request_for(failing_backend), _ProgressLog()
            )

        assert failing_backend.instance_name in str(raised.value)

    async def test_cancellation_stops_the_work_and_frees_the_request(
        self, backend: InferenceBackend
    ) -> None:
        if not self.reports_progress:
            pytest.skip("cancelled at the first progress report, which never comes")
        request = self.request_for(backend)
        cancelled: list[_ProgressLog] = []
        # More cancellations than any sane concurrency limit: a request slot or
        # connection that a cancellation leaks would make the last call hang.
        for _ in range(5):
            with anyio.CancelScope() as scope:
                progress = _ProgressLog(on_report=scope.cancel)
                cancelled.append(progress)
                await backend.generate(request, progress)
            assert scope.cancelled_caught, "generate() returned after a cancel"

        images = await backend.generate(request, _ProgressLog())

        assert len(images) == request.num_images
        # Work of a cancelled request stopped: it reported nothing after the cancel.
        assert [len(p.reports) for p in cancelled] == [1] * len(cancelled)


# -- post-processors ---------------------------------------------------------------


def make_generated_image(
    mime_type: str = "image/png", *, width: int = 96, height: int = 64
) -> GeneratedImage:
    """Return a real image (gradients, not flat colour) as a backend returns it."""
    image = Image.radial_gradient("L").resize((width, height)).convert("RGB")
    image.paste((200, 40, 40), (0, 0, width // 3, height // 3))
    buffer = io.BytesIO()
    image.save(buffer, format=_PIL_FORMATS[mime_type])
    return GeneratedImage(
        data=buffer.getvalue(),
        mime_type=mime_type,
        width=width,
        height=height,
        seed=1234,
        model="contract-model",
        parameters={"steps": 2, "sampler": "euler"},
    )


def make_context(**request: Any) -> ProcessingContext:
    """Return the context a step sees for an image of a 96x64 request."""
    fields: dict[str, Any] = {
        "prompt": "a lighthouse on a cliff at dusk (contract test)",
        "width": 96,
        "height": 64,
        "seed": 1234,
    }
    fields.update(request)
    return ProcessingContext(
        request=GenerationRequest(**fields),
        backend="contract",
        seed=fields["seed"],
        model="contract-model",
    )


_GARBAGE: dict[str, bytes] = {
    "text": b"this is not an image",
    "empty": b"",
    "truncated-png": make_image_bytes("image/png", side=32)[:60],
}


class PostProcessorContract:
    """Behaviour shared by every post-processing step. Subclass it, provide ``step``.

    ``step`` yields a started step (the settings you want checked)::

        class TestBorderStep(PostProcessorContract):
            @pytest.fixture
            async def step(self):
                async with BorderStep(BorderStep.Settings(width=4)) as step:
                    yield step

    Attributes:
        input_mime_types: The image types the step accepts.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]
    input_mime_types: ClassVar[tuple[str, ...]] = (
        "image/png",
        "image/jpeg",
        "image/webp",
    )

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def step(self) -> PostProcessor:
        raise NotImplementedError("Provide a 'step' fixture yielding a started step.")

    @pytest.mark.parametrize("mime_type", ["image/png", "image/jpeg", "image/webp"])
    async def test_returns_an_image_whose_declared_type_and_size_match_its_bytes(
        self, step: PostProcessor, mime_type: str
    ) -> None:
        if mime_type not in self.input_mime_types:
            pytest.skip(f"{mime_type} is not in input_mime_types")
        image = make_generated_image(mime_type)

        result = await step.process(image, make_context())

        # ``result`` may be ``image`` itself when the step has nothing to change
        # (GeneratedImage is immutable); what it declares must match its bytes.
        declared = (result.mime_type, result.width, result.height)
        assert describe_image(result.data) == declared

    async def test_does_not_mutate_its_input(self, step: PostProcessor) -> None:
        image = make_generated_image(self.input_mime_types[0])
        context = make_context()
        before = (copy.deepcopy(image.model_dump()), context.model_dump())

        await step.process(image, context)

        assert (image.model_dump(), context.model_dump()) == before

    @pytest.mark.parametrize("garbage", sorted(_GARBAGE))
    async def test_refuses_garbage_with_a_post_processing_error_naming_the_step(
        self, step: PostProcessor, garbage: str
    ) -> None:
        image = GeneratedImage(
            data=_GARBAGE[garbage],
            mime_type=self.input_mime_types[0],
            width=32,
            height=32,
        )

        with pytest.raises(PostProcessingError) as raised:
            await step.process(image, make_context())

        assert step.instance_name in str(raised.value)
