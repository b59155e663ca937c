"""S3-specific behaviour, against the real SeaweedFS server (the shared contract is
in tests/storage)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest

from mcp_imagegen import ImageNotFoundError, StorageError, new_image_id
from mcp_imagegen.testing import make_record, save_many
from mcp_imagegen_s3 import S3Storage, S3StorageSettings
from tests.s3.seaweed import SECRET_KEY, TEST_BUCKET, SeaweedServer

pytestmark = [pytest.mark.anyio, pytest.mark.s3]

Build = Callable[..., S3StorageSettings]


def keys_under(
    seaweed: SeaweedServer, prefix: str, bucket: str = TEST_BUCKET
) -> set[str]:
    response = seaweed.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {obj["Key"] for obj in response.get("Contents", [])}


# -- layout ----------------------------------------------------------------------


async def test_image_and_record_are_stored_as_prefix_id_objects(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    record, data = make_record(mime_type="image/webp")

    await s3_storage.save(record, data)

    assert keys_under(seaweed, unique_prefix) == {
        f"{unique_prefix}{record.id}.webp",
        f"{unique_prefix}{record.id}.json",
    }


async def test_objects_carry_the_right_content_type(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    record, data = make_record(mime_type="image/jpeg")
    await s3_storage.save(record, data)
    client = seaweed.client()

    image = client.head_object(
        Bucket=TEST_BUCKET, Key=f"{unique_prefix}{record.id}.jpg"
    )
    meta = client.get_object(Bucket=TEST_BUCKET, Key=f"{unique_prefix}{record.id}.json")

    assert image["ContentType"] == "image/jpeg"
    assert meta["ContentType"] == "application/json"
    assert json.loads(meta["Body"].read())["id"] == record.id


async def test_storages_on_different_prefixes_do_not_see_each_other(
    s3_storage: S3Storage, s3_settings: Build
) -> None:
    record, data = make_record()
    await s3_storage.save(record, data)

    async with S3Storage(s3_settings(prefix=f"other-{uuid.uuid4().hex}")) as other:
        assert (await other.list()).items == []
        with pytest.raises(ImageNotFoundError):
            await other.load(record.id)


# -- URLs ------------------------------------------------------------------------


async def test_presigned_url_returns_identical_bytes_with_the_image_type(
    s3_storage: S3Storage,
) -> None:
    record, data = make_record(mime_type="image/png")
    await s3_storage.save(record, data)

    url = await s3_storage.url_for(record.id)
    async with httpx.AsyncClient() as client:
        response = await client.get(url)

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize("part", ["signature", "key", "expiry"])
async def test_tampered_presigned_url_is_refused(
    s3_storage: S3Storage, part: str
) -> None:
    first, first_data = make_record()
    second, second_data = make_record()
    await save_many(s3_storage, [(first, first_data), (second, second_data)])
    url = await s3_storage.url_for(first.id)
    parts = urlsplit(url)
    if part == "signature":
        signature = parse_qs(parts.query)["X-Amz-Signature"][0]
        forged = signature[:-1] + ("0" if signature[-1] != "0" else "1")
        tampered = url.replace(signature, forged)
    elif part == "key":  # the same signature used for another image
        tampered = urlunsplit(
            parts._replace(path=parts.path.replace(first.id, second.id))
        )
    else:
        tampered = url.replace("X-Amz-Expires=3600", "X-Amz-Expires=604800")

    async with httpx.AsyncClient() as client:
        response = await client.get(tampered)

    assert response.status_code == 403
    assert response.content not in (first_data, second_data)


async def test_presigned_url_lives_for_presign_expiry(s3_settings: Build) -> None:
    async with S3Storage(s3_settings(presign_expiry="PT90S")) as storage:
        record, data = make_record()
        await storage.save(record, data)

        url = await storage.url_for(record.id)

    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["90"]


async def test_public_base_url_gives_a_plain_link_to_the_object_key(
    s3_settings: Build, unique_prefix: str
) -> None:
    settings = s3_settings(public_base_url="https://cdn.example.com/images/")
    async with S3Storage(settings) as storage:
        record, data = make_record(mime_type="image/jpeg")
        await storage.save(record, data)

        url = await storage.url_for(record.id)

    assert url == f"https://cdn.example.com/images/{unique_prefix}{record.id}.jpg"


async def test_url_for_an_image_saved_by_another_instance_reads_its_record(
    s3_storage: S3Storage, s3_settings: Build
) -> None:
    record, data = make_record(mime_type="image/gif")
    await s3_storage.save(record, data)

    async with S3Storage(s3_settings()) as other:
        url = await other.url_for(record.id)

    assert urlsplit(url).path.endswith(f"{record.id}.gif")


# -- foreign and damaged objects --------------------------------------------------


async def test_list_and_delete_expired_leave_foreign_objects_alone(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    client = seaweed.client()
    foreign = [
        f"{unique_prefix}README.txt",
        f"{unique_prefix}19990101T000000000-not-an-id.json",
        f"{unique_prefix}nested/20200101T000000000-0123456789ab.json",
        f"{unique_prefix}0000-early.bin",
    ]
    for key in foreign:
        client.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"not ours")
    old, old_data = make_record(created_at=datetime(2001, 1, 1, tzinfo=UTC))
    new, new_data = make_record()
    await save_many(s3_storage, [(old, old_data), (new, new_data)])

    listed = await s3_storage.list()
    deleted = await s3_storage.delete_expired(datetime.now(UTC) + timedelta(days=1))

    assert [r.id for r in listed.items] == [new.id, old.id]
    assert deleted == 2
    assert keys_under(seaweed, unique_prefix) == set(foreign)


async def test_record_object_that_is_not_a_record_raises_storage_error(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    image_id = new_image_id()
    seaweed.client().put_object(
        Bucket=TEST_BUCKET, Key=f"{unique_prefix}{image_id}.json", Body=b"{not json"
    )

    with pytest.raises(StorageError, match="not a valid image record") as raised:
        await s3_storage.get_record(image_id)

    assert not isinstance(raised.value, ImageNotFoundError)


async def test_load_refuses_an_image_larger_than_max_load_bytes(
    s3_settings: Build,
) -> None:
    async with S3Storage(s3_settings(max_load_bytes=1000)) as storage:
        record, data = make_record(b"x" * 1001)
        await storage.save(record, data)

        with pytest.raises(StorageError, match="max_load_bytes"):
            await storage.load(record.id)
        # The refused body was closed: the connection pool still works.
        assert (await storage.get_record(record.id)) == record


async def test_image_without_record_is_invisible_and_delete_removes_it(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    image_id = new_image_id()
    orphan = f"{unique_prefix}{image_id}.png"
    seaweed.client().put_object(Bucket=TEST_BUCKET, Key=orphan, Body=b"half saved")

    assert (await s3_storage.list()).items == []
    with pytest.raises(ImageNotFoundError):
        await s3_storage.load(image_id)
    with pytest.raises(ImageNotFoundError):
        await s3_storage.delete(image_id)

    assert keys_under(seaweed, unique_prefix) == set()


async def test_remove_orphans_leaves_foreign_objects_and_records_alone(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    client = seaweed.client()
    foreign = {
        f"{unique_prefix}notes.txt",
        f"{unique_prefix}{new_image_id()}.png.bak",
        f"{unique_prefix}nested/{new_image_id()}.png",
    }
    for key in foreign:
        client.put_object(Bucket=TEST_BUCKET, Key=key, Body=b"not ours")
    record, data = make_record()
    await s3_storage.save(record, data)
    orphan = f"{unique_prefix}{new_image_id()}.png"
    client.put_object(Bucket=TEST_BUCKET, Key=orphan, Body=b"half saved")

    removed = await s3_storage.remove_orphans(datetime.now(UTC) + timedelta(seconds=1))

    assert removed == 1
    assert keys_under(seaweed, unique_prefix) == foreign | {
        f"{unique_prefix}{record.id}.png",
        f"{unique_prefix}{record.id}.json",
    }


async def test_failed_record_write_removes_the_image_again(
    s3_storage: S3Storage, seaweed: SeaweedServer, unique_prefix: str
) -> None:
    from botocore.exceptions import ClientError

    real_client = s3_storage._client

    class RecordWritesFail:
        """Fault injection at the S3 boundary: PUTs of .json keys are refused."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real_client, name)

        async def put_object(self, **kwargs: Any) -> Any:
            if kwargs["Key"].endswith(".json"):
                error = {"Error": {"Code": "SlowDown", "Message": "Please reduce"}}
                raise ClientError(error, "PutObject")  # type: ignore[arg-type]
            return await real_client.put_object(**kwargs)

    s3_storage._client = RecordWritesFail()
    record, data = make_record()

    with pytest.raises(StorageError, match="SlowDown"):
        await s3_storage.save(record, data)

    assert keys_under(seaweed, unique_prefix) == set()


async def test_error_after_the_bucket_vanished_names_bucket_and_code(
    seaweed: SeaweedServer,
) -> None:
    bucket = f"vanishing-{uuid.uuid4().hex[:12]}"
    settings = S3StorageSettings.model_validate(
        seaweed.storage_table(bucket=bucket, create_bucket=True)
    )
    async with S3Storage(settings) as storage:
        seaweed.client().delete_bucket(Bucket=bucket)

        with pytest.raises(StorageError) as raised:
            await storage.save(*make_record())

    message = str(raised.value)
    assert "NoSuchBucket" in message
    assert bucket in message
    assert seaweed.endpoint in message
    assert SECRET_KEY not in message


async def test_calls_after_aclose_raise_storage_error(s3_settings: Build) -> None:
    storage = S3Storage(s3_settings())
    await storage.start()
    await storage.aclose()

    with pytest.raises(StorageError, match="not started"):
        await storage.get_record(new_image_id())


async def test_bucket_root_storage_lists_and_expires_only_its_own_images(
    seaweed: SeaweedServer,
) -> None:
    bucket = f"root-{uuid.uuid4().hex[:12]}"
    table = seaweed.storage_table(bucket=bucket, create_bucket=True)
    seaweed_client = seaweed.client()
    async with S3Storage(S3StorageSettings.model_validate(table)) as storage:
        seaweed_client.put_object(Bucket=bucket, Key="other-app/data.json", Body=b"{}")
        items = [
            make_record(created_at=datetime(2020, 1, d, tzinfo=UTC)) for d in (1, 2)
        ]
        await save_many(storage, items)

        listed = await storage.list(limit=1)
        rest = await storage.list(limit=1, cursor=listed.next_cursor)
        deleted = await storage.delete_expired(datetime(2021, 1, 1, tzinfo=UTC))

    assert [r.id for r in listed.items + rest.items] == [items[1][0].id, items[0][0].id]
    assert rest.next_cursor is None
    assert deleted == 2
    assert keys_under(seaweed, "", bucket=bucket) == {"other-app/data.json"}
