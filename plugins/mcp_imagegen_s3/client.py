"""The S3 storage's client lifecycle: open the client, check the bucket, close.

aioboto3 (and botocore) are imported in :meth:`S3ClientLifecycle.start`, so loading
this plugin costs nothing when another storage is configured.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any, NoReturn

from pydantic import SecretStr

from mcp_imagegen import ConfigurationError, redact_url_text
from mcp_imagegen_s3.base import S3Base, log
from mcp_imagegen_s3.errors import error_code, start_error


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


class S3ClientLifecycle(S3Base):
    """One aioboto3 session and one client (with its connection pool) live from
    :meth:`start` to :meth:`aclose`."""

    async def start(self) -> None:
        """Open the S3 client and check that the bucket can be used.

        Raises:
            ConfigurationError: if the bucket does not exist (and ``create_bucket``
                is off), or the credentials are missing or refused.
            StorageError: if the endpoint cannot be reached.
        """
        if self._client is not None:
            return
        stack = AsyncExitStack()
        try:
            self._client = await self._open_client(stack)
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
            bucket=self.settings.bucket,
            prefix=self._prefix,
            endpoint=self._endpoint,
            urls="public" if self.settings.public_base_url else "presigned",
        )

    async def _open_client(self, stack: AsyncExitStack) -> Any:
        """Create the session and enter its client on ``stack``."""
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
        try:
            session = aioboto3.Session(
                aws_access_key_id=_reveal(s.access_key_id),
                aws_secret_access_key=_reveal(s.secret_access_key),
                aws_session_token=_reveal(s.session_token),
                region_name=s.region or ("us-east-1" if s.endpoint_url else None),
                profile_name=s.profile,
            )
            return await stack.enter_async_context(
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
            code = error_code(exc)
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
            code = error_code(exc)
            if code == "BucketAlreadyOwnedByYou":  # another replica was faster
                return
            self._raise_start_error(exc, code, action="create the bucket")
        log.info("s3_bucket_created", bucket=bucket, endpoint=self._endpoint)

    def _raise_start_error(
        self, exc: Exception, code: str, action: str = "list"
    ) -> NoReturn:
        log.error(
            "s3_storage_start_failed",
            bucket=self.settings.bucket,
            endpoint=self._endpoint,
            code=code,
        )
        bucket = f"S3 bucket '{self.settings.bucket}' at {self._endpoint}"
        error = start_error(exc, code, bucket, action)
        if error is exc:
            raise exc
        raise error from exc
