"""S3 storage: images and their JSON records as objects in one bucket.

Layout: ``<prefix><id>.<ext>`` holds the image (with its Content-Type) and
``<prefix><id>.json`` its :class:`~mcp_imagegen.ImageRecord`. Ids sort by creation
time, so S3's ascending key order is creation order; the record object is what makes
an image visible (it is written last and deleted first).

aioboto3 (and botocore) are imported in :meth:`S3Storage.start`, so loading this
plugin costs nothing when another storage is configured.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import functools
import importlib.util
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NoReturn
from urllib.parse import quote

import anyio
import pydantic
import structlog
from pydantic import SecretStr

from mcp_imagegen import (
    ConfigurationError,
    ImageNotFoundError,
    ImagePage,
    ImageRecord,
    ImageStorage,
    StorageError,
    StoredImage,
    ValidationError,
    image_id_time,
    redact_url_text,
    validate_image_id,
)
from mcp_imagegen_s3.settings import S3StorageSettings

log = structlog.get_logger(__name__)

#: ``<id>.<ext>`` after the prefix; anything else under the prefix is not ours.
_OBJECT_NAME_RE = re.compile(r"([0-9]{8}T[0-9]{9}-[0-9a-f]{12})\.([a-z0-9]{1,8})")
_RECORD_EXTENSION = "json"
_CURSOR_TAG = "s3:"
#: Error codes S3 servers use for "no such object" (HEAD answers carry no body).
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "403",
    }
)
#: Codes from servers whose DeleteObjects differs from AWS's (checksum headers).
_BATCH_DELETE_UNSUPPORTED = frozenset(
    {
        "NotImplemented",
        "MissingContentMD5",
        "InvalidDigest",
        "BadDigest",
        "InvalidRequest",
    }
)
#: First listing window before a cursor; each further window is four times wider.
_FIRST_WINDOW = timedelta(minutes=15)
_WINDOW_GROWTH = 4
#: Record reads in flight for one page of ``list``.
_RECORD_FETCH_CONCURRENCY = 16
_BATCH_DELETE_SIZE = 1000
#: Extensions remembered per id, so ``url_for`` after ``save``/``list`` costs no
#: request (the key of an image needs its extension, which its record holds).
_EXTENSION_CACHE_SIZE = 10_000


def _stamp(moment: datetime) -> str:
    """The id prefix of an image created at ``moment`` (ids compare as strings)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}"


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


def _is_transport_error(exc: BaseException) -> bool:
    """True for failures of the connection itself rather than an S3 answer."""
    from aiohttp import ClientError as AiohttpClientError
    from botocore.exceptions import BotoCoreError

    return isinstance(exc, BotoCoreError | AiohttpClientError | OSError | TimeoutError)


def _is_s3_answer(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError)


def _orphan_keys(
    objects: builtins.list[dict[str, Any]], older_than: datetime
) -> builtins.list[str]:
    """The image keys among one id's objects, if it has no record, that are old."""
    keys = [str(obj["Key"]) for obj in objects]
    if any(key.endswith("." + _RECORD_EXTENSION) for key in keys):
        return []
    return [str(obj["Key"]) for obj in objects if obj["LastModified"] < older_than]


class S3Storage(ImageStorage):
    """Keeps images in an S3 bucket (AWS, MinIO, Ceph RGW, SeaweedFS, R2, ...).

    One aioboto3 session and one client (with its connection pool) live from
    :meth:`start` to :meth:`aclose`.
    """

    name: ClassVar[str] = "s3"
    Settings: ClassVar[type[S3StorageSettings]] = S3StorageSettings

    def __init__(self, settings: S3StorageSettings, *, instance_name: str = "") -> None:
        # aioboto3 is an install extra; say so now, not at the first connection.
        # find_spec does not import it, so building the storage stays cheap.
        if importlib.util.find_spec("aioboto3") is None:
            raise ConfigurationError(
                'storage.backend = "s3" needs the S3 extra, which is not installed: '
                "pip install 'mcp-imagegen[s3]' (it brings aioboto3)."
            )
        super().__init__(settings, instance_name=instance_name)
        self.settings: S3StorageSettings = settings
        self._prefix = settings.prefix
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        # Shown in logs and errors only, so masked once here.
        self._endpoint = redact_url_text(settings.endpoint_url or "AWS S3")
        self._batch_delete = True
        self._extensions: OrderedDict[str, str] = OrderedDict()

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Open the S3 client and check that the bucket can be used.

        Raises:
            ConfigurationError: if the bucket does not exist (and ``create_bucket``
                is off), or the credentials are missing or refused.
            StorageError: if the endpoint cannot be reached.
        """
        if self._client is not None:
            return
        import aioboto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        s = self.settings
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": s.effective_addressing_style},
            # S3-compatible servers reject or mishandle the CRC checksums botocore
            # adds by default since 1.36; AWS needs them only where required.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": s.retry_mode, "total_max_attempts": s.max_attempts},
            max_pool_connections=s.max_pool_connections,
            connect_timeout=s.connect_timeout.total_seconds(),
            read_timeout=s.read_timeout.total_seconds(),
        )
        verify: bool | str = str(s.ca_bundle) if s.ca_bundle else s.verify_tls
        stack = AsyncExitStack()
        try:
            try:
                session = aioboto3.Session(
                    aws_access_key_id=_reveal(s.access_key_id),
                    aws_secret_access_key=_reveal(s.secret_access_key),
                    aws_session_token=_reveal(s.session_token),
                    region_name=s.region or ("us-east-1" if s.endpoint_url else None),
                    profile_name=s.profile,
                )
                self._client = await stack.enter_async_context(
                    session.client(
                        "s3", endpoint_url=s.endpoint_url, config=config, verify=verify
                    )
                )
            except BotoCoreError as exc:  # bad profile, region, CA bundle, ...
                raise ConfigurationError(
                    f"Cannot create the S3 client for bucket '{s.bucket}' at "
                    f"{self._endpoint}: {type(exc).__name__}: "
                    f"{redact_url_text(str(exc))}. Check "
                    "storage.s3.profile, region and ca_bundle."
                ) from exc
            self._stack = stack
            self._endpoint = redact_url_text(str(self._client.meta.endpoint_url))
            await self._check_bucket()
        except BaseException:
            self._client = None
            self._stack = None
            await stack.aclose()
            raise
        log.info(
            "s3_storage_started",
            instance=self.instance_name,
            bucket=s.bucket,
            prefix=self._prefix,
            endpoint=self._endpoint,
            urls="public" if s.public_base_url else "presigned",
        )

    async def aclose(self) -> None:
        """Close the client and its connection pool. Safe to call twice."""
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
            log.info("s3_storage_closed", instance=self.instance_name)

    async def _check_bucket(self) -> None:
        # ListObjectsV2 rather than HeadBucket: its answer has a body, so the error
        # code is precise (NoSuchBucket, SignatureDoesNotMatch, ...), and it proves
        # the list permission that ``list`` and ``delete_expired`` need.
        bucket = self.settings.bucket
        try:
            await self._client.list_objects_v2(
                Bucket=bucket, Prefix=self._prefix, MaxKeys=1
            )
            return
        except Exception as exc:
            code = _error_code(exc)
            if code == "NoSuchBucket" and self.settings.create_bucket:
                await self._create_bucket()
                return
            self._raise_start_error(exc, code)

    async def _create_bucket(self) -> None:
        bucket = self.settings.bucket
        region = self._client.meta.region_name
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if not self.settings.endpoint_url and region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await self._client.create_bucket(**kwargs)
        except Exception as exc:
            code = _error_code(exc)
            if code == "BucketAlreadyOwnedByYou":  # another replica was faster
                return
            self._raise_start_error(exc, code, action="create the bucket")
        log.info("s3_bucket_created", bucket=bucket, endpoint=self._endpoint)

    def _raise_start_error(
        self, exc: Exception, code: str, action: str = "list"
    ) -> NoReturn:
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        bucket = f"S3 bucket '{self.settings.bucket}' at {self._endpoint}"
        keys = (
            "storage.s3.access_key_id and secret_access_key "
            "(MCP_IMAGEGEN_STORAGE__S3__ACCESS_KEY_ID / ..._SECRET_ACCESS_KEY)"
        )
        log.error(
            "s3_storage_start_failed",
            bucket=self.settings.bucket,
            endpoint=self._endpoint,
            code=code,
        )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            raise ConfigurationError(
                f"No AWS credentials found for {bucket} ({code}). Set {keys}, or "
                "configure the AWS credential chain (AWS_PROFILE, web identity, "
                "instance role, ...)."
            ) from exc
        if code == "NoSuchBucket":
            raise ConfigurationError(
                f"{bucket} does not exist (NoSuchBucket). Create it, or set "
                "storage.s3.create_bucket = true."
            ) from exc
        if code in _CREDENTIAL_CODES:
            raise ConfigurationError(
                f"{bucket} refused the credentials ({code}) when asked to {action}. "
                f"Check {keys} or the AWS credential chain, and that they may list, "
                "read and write the bucket."
            ) from exc
        if _is_s3_answer(exc):
            raise ConfigurationError(
                f"{bucket} answered {code} when asked to {action}."
            ) from exc
        if _is_transport_error(exc):
            raise StorageError(
                f"{bucket} is unreachable ({code}). Check storage.s3.endpoint_url "
                "and that the server is running."
            ) from exc
        raise exc

    # -- keys ------------------------------------------------------------------

    def _record_key(self, image_id: str) -> str:
        return f"{self._prefix}{image_id}.{_RECORD_EXTENSION}"

    def _image_key(self, record: ImageRecord) -> str:
        return f"{self._prefix}{record.id}.{record.extension}"

    def _remember(self, record: ImageRecord) -> None:
        self._extensions[record.id] = record.extension
        self._extensions.move_to_end(record.id)
        if len(self._extensions) > _EXTENSION_CACHE_SIZE:
            self._extensions.popitem(last=False)

    def _parse_key(self, key: str) -> tuple[str, str] | None:
        """Return ``(image id, extension)`` for one of our keys, else ``None``."""
        if not key.startswith(self._prefix):
            return None
        match = _OBJECT_NAME_RE.fullmatch(key, len(self._prefix))
        return (match.group(1), match.group(2)) if match else None

    # -- calls -----------------------------------------------------------------

    @property
    def _s3(self) -> Any:
        if self._client is None:
            raise StorageError(
                f"S3 storage '{self.instance_name}' is not started "
                "(call start() first)."
            )
        return self._client

    async def _call(
        self,
        action: str,
        key: str,
        call: Callable[[], Awaitable[Any]],
        *,
        image_id: str | None = None,
    ) -> Any:
        """Run one S3 call, turning its failures into the storage's error types."""
        try:
            return await call()
        except Exception as exc:
            code = _error_code(exc)
            if image_id is not None and code in _NOT_FOUND_CODES:
                raise ImageNotFoundError(image_id) from exc
            if not (_is_s3_answer(exc) or _is_transport_error(exc)):
                raise
            log.warning(
                "s3_request_failed",
                action=action,
                bucket=self.settings.bucket,
                key=key,
                code=code,
            )
            where = f"'{key}' in S3 bucket '{self.settings.bucket}' at {self._endpoint}"
            if code == "NoSuchBucket":
                detail = "the bucket no longer exists"
            elif _is_s3_answer(exc):
                detail = "the server answered with this error"
            else:
                detail = "the endpoint could not be reached, or the connection broke"
            raise StorageError(
                f"Could not {action} {where}: {code} ({detail})."
            ) from exc

    async def _get_bytes(self, key: str, image_id: str, limit: int) -> bytes:
        async def get() -> bytes:
            response = await self._s3.get_object(Bucket=self.settings.bucket, Key=key)
            # Read or close every body: an unread one holds its pooled connection.
            async with response["Body"] as body:
                size = response.get("ContentLength")
                if size is not None:
                    if int(size) > limit:
                        raise self._too_large(key, int(size), limit)
                    data: bytes = await body.read()
                    return data
                # No length announced: count while reading.
                chunks: list[bytes] = []
                received = 0
                async for chunk in body.iter_chunks():
                    received += len(chunk)
                    if received > limit:
                        raise self._too_large(key, received, limit)
                    chunks.append(chunk)
                return b"".join(chunks)

        result: bytes = await self._call("read", key, get, image_id=image_id)
        return result

    def _too_large(self, key: str, size: int, limit: int) -> StorageError:
        return StorageError(
            f"Object '{key}' in S3 bucket '{self.settings.bucket}' is {size} bytes "
            f"or more, above the limit of {limit} (storage.s3.max_load_bytes)."
        )

    async def _put(self, key: str, data: bytes, content_type: str) -> None:
        bucket = self.settings.bucket

        async def put() -> None:
            await self._s3.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type
            )

        await self._call("write", key, put)

    async def _delete_keys(self, keys: list[str]) -> None:
        """Delete ``keys`` (missing ones are not an error)."""
        bucket = self.settings.bucket
        for start in range(0, len(keys), _BATCH_DELETE_SIZE):
            batch = keys[start : start + _BATCH_DELETE_SIZE]
            if len(batch) > 1 and self._batch_delete:
                try:
                    await self._delete_batch(batch)
                    continue
                except StorageError as exc:
                    if (
                        _error_code(exc.__cause__ or exc)
                        not in _BATCH_DELETE_UNSUPPORTED
                    ):
                        raise
                    self._batch_delete = False
                    log.info("s3_batch_delete_unsupported", endpoint=self._endpoint)
            await self._gather_bounded(
                [functools.partial(self._delete_one, bucket, key) for key in batch]
            )

    async def _delete_batch(self, batch: list[str]) -> None:
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

    async def _gather_bounded(
        self, calls: builtins.list[Callable[[], Awaitable[Any]]]
    ) -> builtins.list[Any]:
        """Run ``calls`` with a bounded number in flight; results in call order.

        A task group rather than ``asyncio.gather``: when one call fails the others
        are cancelled (their requests aborted), and none outlives this method.
        """
        limiter = anyio.CapacityLimiter(_RECORD_FETCH_CONCURRENCY)
        results: builtins.list[Any] = [None] * len(calls)

        async def bounded(index: int, call: Callable[[], Awaitable[Any]]) -> None:
            async with limiter:
                results[index] = await call()

        try:
            async with anyio.create_task_group() as group:
                for index, call in enumerate(calls):
                    group.start_soon(bounded, index, call)
        except BaseExceptionGroup as group_error:
            # Callers handle the storage's own errors: raise the first one alone.
            first = group_error.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        return results

    async def _keys(
        self,
        *,
        start_after: str | None = None,
        stop_at: str | None = None,
        prefix: str | None = None,
    ) -> AsyncIterator[list[str]]:
        """Yield pages of keys in ascending order, from ``start_after`` (exclusive)
        up to ``stop_at`` (exclusive)."""
        async for page in self._objects(
            start_after=start_after, stop_at=stop_at, prefix=prefix
        ):
            yield [obj["Key"] for obj in page]

    async def _objects(
        self,
        *,
        start_after: str | None = None,
        stop_at: str | None = None,
        prefix: str | None = None,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Like :meth:`_keys`, with each object's listing entry (``LastModified``)."""
        bucket = self.settings.bucket
        kwargs: dict[str, Any] = {
            "Bucket": bucket,
            "Prefix": self._prefix if prefix is None else prefix,
        }
        if start_after is not None:
            kwargs["StartAfter"] = start_after
        while True:
            response = await self._call(
                "list", kwargs["Prefix"] + "*", self._list_call(dict(kwargs))
            )
            objects: list[dict[str, Any]] = response.get("Contents") or []
            if stop_at is not None and objects and objects[-1]["Key"] >= stop_at:
                yield [obj for obj in objects if obj["Key"] < stop_at]
                return
            yield objects
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    # -- ImageStorage ----------------------------------------------------------

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
        self._remember(record)
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
        raw = await self._get_bytes(key, image_id, self.settings.max_load_bytes)
        try:
            record = ImageRecord.model_validate_json(raw)
        except pydantic.ValidationError:
            raise StorageError(
                f"The record '{key}' in S3 bucket '{self.settings.bucket}' is not a "
                "valid image record (was it written by something else?)."
            ) from None
        self._remember(record)
        return record

    async def load(self, image_id: str) -> StoredImage:
        """Read an image and its record.

        Raises:
            ImageNotFoundError: if no image has this id.
            StorageError: if the image is larger than ``max_load_bytes`` or S3 fails.
        """
        record = await self.get_record(image_id)
        data = await self._get_bytes(
            self._image_key(record), image_id, self.settings.max_load_bytes
        )
        return StoredImage(record=record, data=data)

    async def list(self, limit: int = 20, cursor: str | None = None) -> ImagePage:
        """Return up to ``limit`` records, newest first.

        Raises:
            ValidationError: if ``limit`` is below 1 or ``cursor`` was not issued by
                this storage.
        """
        if limit < 1:
            raise ValidationError(f"limit must be at least 1, got {limit}.")
        before = self._decode_cursor(cursor) if cursor is not None else None
        ids = await self._newest_ids(limit + 1, before)
        page_ids = ids[:limit]
        records = await self._gather_bounded(
            [functools.partial(self._record_or_none, i) for i in page_ids]
        )
        items = [record for record in records if record is not None]
        next_cursor = self._encode_cursor(page_ids[-1]) if len(ids) > limit else None
        return ImagePage(items=items, next_cursor=next_cursor)

    async def _record_or_none(self, image_id: str) -> ImageRecord | None:
        try:
            return await self.get_record(image_id)
        except ImageNotFoundError:  # deleted between listing and reading
            return None

    async def _newest_ids(self, count: int, before: str | None) -> builtins.list[str]:
        """Return up to ``count`` ids of stored records, newest first, below ``before``.

        S3 lists keys in ascending order only, so the newest ids are found by listing
        time windows that reach further back each time: the window right before the
        cursor (or now) first, then ones four times wider, until enough ids are found
        or the oldest key is passed. Recent images cost one listing request.
        """
        upper = self._prefix + before if before is not None else None
        anchor = image_id_time(before) if before is not None else datetime.now(UTC)
        span = _FIRST_WINDOW
        oldest: str | None = None
        found: list[str] = []
        while True:
            lower = self._window_start(anchor, span)
            window: list[str] = []
            async for keys in self._keys(start_after=lower, stop_at=upper):
                for key in keys:
                    parsed = self._parse_key(key)
                    if parsed is not None and parsed[1] == _RECORD_EXTENSION:
                        window.append(parsed[0])
            found.extend(reversed(window))
            if len(found) >= count or lower is None:
                return found[:count]
            if oldest is None:
                oldest = await self._first_key()
            if oldest is None or lower <= oldest:
                return found  # every key is above ``lower``: nothing older is left
            upper = lower
            span *= _WINDOW_GROWTH

    def _window_start(self, anchor: datetime, span: timedelta) -> str | None:
        try:
            start = anchor - span
        except OverflowError:
            return None
        # Ids carry four-digit years; anything older is listed from the start.
        return None if start.year < 1000 else self._prefix + _stamp(start)

    def _list_call(self, kwargs: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        async def list_page() -> Any:
            return await self._s3.list_objects_v2(**kwargs)

        return list_page

    async def _first_key(self) -> str | None:
        bucket = self.settings.bucket

        async def first() -> Any:
            return await self._s3.list_objects_v2(
                Bucket=bucket, Prefix=self._prefix, MaxKeys=1
            )

        response = await self._call("list", self._prefix + "*", first)
        contents = response.get("Contents") or []
        return str(contents[0]["Key"]) if contents else None

    def _encode_cursor(self, image_id: str) -> str:
        raw = (_CURSOR_TAG + image_id).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode_cursor(self, cursor: str) -> str:
        invalid = ValidationError(
            "Invalid cursor: pass the next_cursor of a previous listing unchanged."
        )
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        except (binascii.Error, UnicodeError, ValueError):
            raise invalid from None
        if not raw.startswith(_CURSOR_TAG):
            raise invalid
        try:
            return validate_image_id(raw[len(_CURSOR_TAG) :])
        except ValidationError:
            raise invalid from None

    async def delete(self, image_id: str) -> None:
        """Delete an image and its record (the record first, so it vanishes at once).

        Raises:
            ImageNotFoundError: if no image has this id.
        """
        validate_image_id(image_id)
        keys: list[str] = []
        async for page in self._keys(prefix=self._prefix + image_id + "."):
            keys.extend(key for key in page if self._parse_key(key) is not None)
        self._extensions.pop(image_id, None)
        record_key = self._record_key(image_id)
        if record_key not in keys:
            if keys:  # an image whose save failed half-way: tidy it up
                await self._delete_keys(keys)
            raise ImageNotFoundError(image_id)
        await self._delete_keys([record_key])
        await self._delete_keys([key for key in keys if key != record_key])
        log.info("s3_image_deleted", image_id=image_id)

    async def delete_expired(self, older_than: datetime) -> int:
        """Delete every image whose id says it was created before ``older_than``.

        Keys sort by creation time, so only the expired part of the bucket is listed.
        Objects under the prefix that are not images of this server are never touched.

        Returns:
            How many images (records) were deleted.
        """
        older_than = (
            older_than.replace(tzinfo=UTC) if older_than.tzinfo is None else older_than
        )
        # Ids hold milliseconds: an id is older than ``older_than`` exactly when its
        # stamp is below ``older_than`` rounded up to the next millisecond.
        rounded_up = older_than + timedelta(microseconds=-older_than.microsecond % 1000)
        stop_at = self._prefix + _stamp(rounded_up)
        deleted = 0
        async for page in self._keys(stop_at=stop_at):
            records: list[str] = []
            images: list[str] = []
            for key in page:
                parsed = self._parse_key(key)
                if parsed is not None:
                    self._extensions.pop(parsed[0], None)
                    (records if parsed[1] == _RECORD_EXTENSION else images).append(key)
            await self._delete_keys(records)
            await self._delete_keys(images)
            deleted += len(records)
        if deleted:
            log.info(
                "s3_expired_images_deleted", count=deleted, older_than=str(older_than)
            )
        return deleted

    async def remove_orphans(self, older_than: datetime) -> int:
        """Delete image objects without a record last modified before ``older_than``.

        A save interrupted between its two puts (a crash, an outage) or a delete
        interrupted between its two deletes leaves an image object without its
        record: invisible, never listed, never expired. Saves use single PUTs, so
        no multipart uploads are left. Objects under the prefix that are not this
        server's are never touched.

        Returns:
            How many objects were deleted.
        """
        cutoff = (
            older_than.replace(tzinfo=UTC) if older_than.tzinfo is None else older_than
        )
        removed = 0
        orphans: builtins.list[str] = []
        async for objects in self._objects_by_id():
            orphans.extend(_orphan_keys(objects, cutoff))
            if len(orphans) >= _BATCH_DELETE_SIZE:  # keep memory flat
                await self._delete_keys(orphans)
                removed, orphans = removed + len(orphans), []
        await self._delete_keys(orphans)
        removed += len(orphans)
        if removed:
            log.info("s3_orphans_removed", count=removed, older_than=str(cutoff))
        return removed

    async def _objects_by_id(self) -> AsyncIterator[builtins.list[dict[str, Any]]]:
        """Yield the listing entries of each id's objects (image and record)."""
        # Keys sort by id, so one id's objects are neighbours (perhaps split
        # across two listing pages).
        current: str | None = None
        group: builtins.list[dict[str, Any]] = []
        async for page in self._objects():
            for obj in page:
                parsed = self._parse_key(obj["Key"])
                if parsed is None:
                    continue
                if parsed[0] != current and group:
                    yield group
                    group = []
                current = parsed[0]
                group.append(obj)
        if group:
            yield group

    async def url_for(self, image_id: str) -> str:
        """Return a presigned GET URL, or a ``public_base_url`` link.

        Images this instance saved, listed or read recently need no request; others
        cost one read of their record (which also proves they exist).

        Raises:
            ImageNotFoundError: if no image has this id.
        """
        validate_image_id(image_id)
        extension = self._extensions.get(image_id)
        if extension is None:
            extension = (await self.get_record(image_id)).extension
        key = f"{self._prefix}{image_id}.{extension}"
        if self.settings.public_base_url:
            return f"{self.settings.public_base_url}/{quote(key)}"
        bucket = self.settings.bucket
        expiry = int(self.settings.presign_expiry.total_seconds())

        async def presign() -> Any:
            return await self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expiry
            )

        url: str = await self._call("sign a URL for", key, presign)
        return url
