"""What every part of the S3 storage shares: settings, keys, and one S3 call."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, ClassVar

import structlog

from mcp_imagegen import (
    ConfigurationError,
    ExtensionCache,
    ImageNotFoundError,
    ImageRecord,
    ImageStorage,
    StorageError,
    redact_url_text,
)
from mcp_imagegen_s3.errors import (
    NOT_FOUND_CODES,
    error_code,
    is_s3_answer,
    is_transport_error,
    request_error,
)
from mcp_imagegen_s3.settings import S3StorageSettings

log = structlog.get_logger("mcp_imagegen_s3.storage")

#: ``<id>.<ext>`` after the prefix; anything else under the prefix is not ours.
_OBJECT_NAME_RE = re.compile(r"([0-9]{8}T[0-9]{9}-[0-9a-f]{12})\.([a-z0-9]{1,8})")
RECORD_EXTENSION = "json"
#: Extensions remembered per id, so ``url_for`` after ``save``/``list`` costs no
#: request (the key of an image needs its extension, which its record holds).
EXTENSION_CACHE_SIZE = 10_000


class S3Base(ImageStorage):
    """The state of an S3 storage and the one way its parts call S3."""

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
        self._extensions = ExtensionCache(EXTENSION_CACHE_SIZE)

    # -- keys ------------------------------------------------------------------

    def _record_key(self, image_id: str) -> str:
        return f"{self._prefix}{image_id}.{RECORD_EXTENSION}"

    def _image_key(self, record: ImageRecord) -> str:
        return f"{self._prefix}{record.id}.{record.extension}"

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
            code = error_code(exc)
            if image_id is not None and code in NOT_FOUND_CODES:
                raise ImageNotFoundError(image_id) from exc
            if not (is_s3_answer(exc) or is_transport_error(exc)):
                raise
            log.warning(
                "s3_request_failed",
                action=action,
                bucket=self.settings.bucket,
                key=key,
                code=code,
            )
            where = f"'{key}' in S3 bucket '{self.settings.bucket}' at {self._endpoint}"
            raise request_error(exc, code, action, where) from exc

    # -- listing pages -----------------------------------------------------------

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

    def _list_call(self, kwargs: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        async def list_page() -> Any:
            return await self._s3.list_objects_v2(**kwargs)

        return list_page

    async def _first_key(self) -> str | None:
        """The lowest key under the prefix, or ``None`` when there is none."""
        response = await self._call(
            "list",
            self._prefix + "*",
            self._list_call(
                {"Bucket": self.settings.bucket, "Prefix": self._prefix, "MaxKeys": 1}
            ),
        )
        contents = response.get("Contents") or []
        return str(contents[0]["Key"]) if contents else None
