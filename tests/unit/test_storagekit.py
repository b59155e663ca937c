"""The helpers every storage shares: listing cursors and the extension cache."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mcp_imagegen import (
    ExtensionCache,
    ValidationError,
    decode_cursor,
    encode_cursor,
    id_stamp,
    image_id_time,
    new_image_id,
)
from mcp_imagegen.testing import make_record


@pytest.mark.parametrize("tag", ["", "s3:"])
def test_a_cursor_gives_back_its_id(tag: str) -> None:
    image_id = new_image_id()

    assert decode_cursor(encode_cursor(image_id, tag=tag), tag=tag) == image_id


def test_cursors_keep_the_format_storages_issued_before() -> None:
    # Clients may hold a next_cursor across an upgrade: the encoding stays put.
    image_id = new_image_id()
    plain = base64.urlsafe_b64encode(image_id.encode()).decode().rstrip("=")
    tagged = base64.urlsafe_b64encode(f"s3:{image_id}".encode()).decode().rstrip("=")

    assert encode_cursor(image_id) == plain
    assert encode_cursor(image_id, tag="s3:") == tagged


@pytest.mark.parametrize(
    ("cursor", "tag"),
    [
        ("garbage", ""),
        ("%%%", ""),
        ("Li4vZXRj", ""),  # "../etc"
        (encode_cursor(new_image_id()), "s3:"),  # another storage type's cursor
        ("é", ""),
    ],
)
def test_a_foreign_cursor_is_a_validation_error(cursor: str, tag: str) -> None:
    with pytest.raises(ValidationError, match="Invalid cursor"):
        decode_cursor(cursor, tag=tag)


def test_extension_cache_keeps_the_most_recently_remembered() -> None:
    cache = ExtensionCache(3)
    records = [make_record(image_id=new_image_id())[0] for _ in range(5)]
    for record in records:
        cache.remember(record)
    cache.remember(records[2])  # used again: now the newest

    assert list(cache) == [records[3].id, records[4].id, records[2].id]
    assert cache.get(records[4].id) == records[4].extension
    assert cache.get(records[0].id) is None


def test_extension_cache_forgets_deleted_ids() -> None:
    cache = ExtensionCache(3)
    record = make_record(image_id=new_image_id())[0]
    cache.remember(record)

    cache.forget(record.id)
    cache.forget(record.id)  # unknown ids are ignored

    assert cache.get(record.id) is None
    assert len(cache) == 0


def test_an_id_stamp_is_the_time_part_of_the_ids_of_that_moment() -> None:
    moment = datetime(2026, 11, 26, 3, 44, 42, 123456, tzinfo=UTC)
    image_id = new_image_id(moment)

    assert id_stamp(moment) == "20261126T034442123"
    assert image_id.startswith(id_stamp(moment))
    assert image_id_time(image_id) == moment.replace(microsecond=123000)
    # Ids of the next millisecond sort above the stamp; a range bound holds.
    assert new_image_id(moment + timedelta(milliseconds=1)) > id_stamp(moment)


def test_an_id_stamp_is_in_utc() -> None:
    utc = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    elsewhere = utc.astimezone(timezone(timedelta(hours=5)))

    assert id_stamp(elsewhere) == id_stamp(utc) == "20260101T003000000"
    assert id_stamp(utc.replace(tzinfo=None)) == id_stamp(utc)  # naive is UTC
