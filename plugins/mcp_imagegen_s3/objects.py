"""The S3 storage's object I/O: saves, loads and deletes of images and records."""

from __future__ import annotations

import builtins
import functools
import time
from typing import Any

import anyio
import pydantic

from mcp_imagegen import (
    ImageNotFoundError,
    ImageRecord,
    StorageError,
    StoredImage,
    gather,
    validate_image_id,
)
from mcp_imagegen_s3.base import S3Base, log
from mcp_imagegen_s3.errors import BATCH_DELETE_UNSUPPORTED, error_code

#: Requests in flight for one page of ``list`` or one batch of single deletes.
RECORD_FETCH_CONCURRENCY = 16
BATCH_DELETE_SIZE = 1000


class S3Objects(S3Base):
    """Writes, reads and deletes the objects of images and their records."""

    async def save(self, record: ImageRecord, data: bytes) -> None:
        """Store the image, then its record.

        The record is written last, so a reader that finds it finds the image too;
        if the record cannot be written the image is removed again.

        Raises:
            StorageError: naming the key and the S3 error code.
        """
        validate_image_id(record.id)
        started = time.perf_counter()
        image_key = self._image_key(record)
        record_key = self._record_key(record.id)
        try:
            await self._put(image_key, data, record.mime_type)
            await self._put(
                record_key, record.model_dump_json().encode(), "application/json"
            )
        except BaseException:
            # Failed or cancelled (a client gave up, the server shuts down): a put
            # in flight may still have landed, so remove both, record first.
            await self._undo_save([record_key, image_key])
            raise
        self._extensions.remember(record)
        log.debug(
            "s3_image_saved",
            image_id=record.id,
            bytes=len(data),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _undo_save(self, keys: builtins.list[str]) -> None:
        """Delete what an unfinished save wrote, even while being cancelled."""
        # Shielded, so a cancelled save does not leave an image without a record;
        # bounded by the client's own connect/read timeouts and retry limit.
        with anyio.CancelScope(shield=True):
            try:
                await self._delete_keys(keys)
            except StorageError:
                # remove_orphans sweeps it once it is older than orphan_grace.
                log.warning("s3_orphan_image_left", key=keys[-1])

    async def get_record(self, image_id: str) -> ImageRecord:
        """Read an image's record.

        Raises:
            ImageNotFoundError: if no image has this id.
            StorageError: if it cannot be read or is not a valid record.
        """
        validate_image_id(image_id)
        key = self._record_key(image_id)
        raw = await self._get_bytes(key, image_id)
        try:
            record = ImageRecord.model_validate_json(raw)
        except pydantic.ValidationError:
            raise StorageError(
                f"The record '{key}' in S3 bucket '{self.settings.bucket}' is not a "
                "valid image record (was it written by something else?)."
            ) from None
        self._extensions.remember(record)
        return record

    async def load(self, image_id: str) -> StoredImage:
        """Read an image and its record.

        Raises:
            ImageNotFoundError: if no image has this id.
            StorageError: if the image is larger than ``max_load_bytes`` or S3 fails.
        """
        record = await self.get_record(image_id)
        data = await self._get_bytes(self._image_key(record), image_id)
        return StoredImage(record=record, data=data)

    async def _get_bytes(self, key: str, image_id: str) -> bytes:
        """Read one object, refusing one above ``max_load_bytes``."""
        limit = self.settings.max_load_bytes

        async def get() -> bytes:
            response = await self._s3.get_object(Bucket=self.settings.bucket, Key=key)
            # Read or close every body: an unread one holds its pooled connection.
            async with response["Body"] as body:
                size = response.get("ContentLength")
                if size is not None:
                    if int(size) > limit:
                        raise self._too_large(key, int(size))
                    data: bytes = await body.read()
                    return data
                # No length announced: count while reading.
                chunks: list[bytes] = []
                received = 0
                async for chunk in body.iter_chunks():
                    received += len(chunk)
                    if received > limit:
                        raise self._too_large(key, received)
                    chunks.append(chunk)
                return b"".join(chunks)

        result: bytes = await self._call("read", key, get, image_id=image_id)
        return result

    def _too_large(self, key: str, size: int) -> StorageError:
        return StorageError(
            f"Object '{key}' in S3 bucket '{self.settings.bucket}' is {size} bytes "
            f"or more, above the limit of {self.settings.max_load_bytes} "
            "(storage.s3.max_load_bytes)."
        )

    async def _put(self, key: str, data: bytes, content_type: str) -> None:
        bucket = self.settings.bucket

        async def put() -> None:
            await self._s3.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type
            )

        await self._call("write", key, put)

    async def delete(self, image_id: str) -> None:
        """Delete an image and its record (the record first, so it vanishes at once).

        Raises:
            ImageNotFoundError: if no image has this id.
        """
        validate_image_id(image_id)
        keys: list[str] = []
        async for page in self._keys(prefix=self._prefix + image_id + "."):
            keys.extend(key for key in page if self._parse_key(key) is not None)
        self._extensions.forget(image_id)
        record_key = self._record_key(image_id)
        if record_key not in keys:
            if keys:  # an image whose save failed half-way: tidy it up
                await self._delete_keys(keys)
            raise ImageNotFoundError(image_id)
        await self._delete_keys([record_key])
        await self._delete_keys([key for key in keys if key != record_key])
        log.info("s3_image_deleted", image_id=image_id)

    async def _delete_keys(self, keys: builtins.list[str]) -> None:
        """Delete ``keys`` (missing ones are not an error)."""
        bucket = self.settings.bucket
        for start in range(0, len(keys), BATCH_DELETE_SIZE):
            batch = keys[start : start + BATCH_DELETE_SIZE]
            if len(batch) > 1 and self._batch_delete:
                try:
                    await self._delete_batch(batch)
                    continue
                except StorageError as exc:
                    if error_code(exc.__cause__ or exc) not in BATCH_DELETE_UNSUPPORTED:
                        raise
                    self._batch_delete = False
                    log.info("s3_batch_delete_unsupported", endpoint=self._endpoint)
            await gather(
                [functools.partial(self._delete_one, bucket, key) for key in batch],
                limit=RECORD_FETCH_CONCURRENCY,
            )

    async def _delete_batch(self, batch: builtins.list[str]) -> None:
        bucket = self.settings.bucket

        async def delete_objects() -> Any:
            return await self._s3.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )

        response = await self._call("delete", batch[0], delete_objects)
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise StorageError(
                f"Could not delete '{first.get('Key')}' in S3 bucket '{bucket}' at "
                f"{self._endpoint}: {first.get('Code')} ({len(errors)} of "
                f"{len(batch)} objects not deleted)."
            )

    async def _delete_one(self, bucket: str, key: str) -> None:
        async def delete_object() -> None:
            await self._s3.delete_object(Bucket=bucket, Key=key)

        await self._call("delete", key, delete_object)
