"""The helpers every storage shares: listing cursors and the extension cache."""

from __future__ import annotations

import base64

import pytest

from mcp_imagegen import (
    ExtensionCache,
    ValidationError,
    decode_cursor,
    encode_cursor,
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
