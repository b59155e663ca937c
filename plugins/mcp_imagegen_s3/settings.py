"""Settings of the S3 storage: the ``[storage.s3]`` table."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from mcp_imagegen import ComponentSettings, redact_url_text

#: SigV4 presigned URLs cannot live longer than seven days.
MAX_PRESIGN_EXPIRY = timedelta(days=7)


def _check_http_url(value: str, setting: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # The value is not echoed: a mistyped URL may hold credentials.
        raise ValueError(f"{setting} must be an http:// or https:// URL with a host")
    return value.rstrip("/")


def _has_credentials(value: object) -> bool:
    # urlsplit alone misses a password holding '/' ("u:pa/ss@host" has netloc
    # "u:pa"); the shared redaction rule sees every form.
    return isinstance(value, str) and redact_url_text(value) != value


class S3StorageSettings(ComponentSettings):
    """``[storage.s3]``: where and how images are kept in S3 or an S3-compatible store.

    Attributes:
        bucket: Bucket holding the images (required).
        prefix: Key prefix for every object; a trailing ``/`` is added when missing
            (``"images"`` stores ``images/<id>.png``). Empty stores at the bucket root.
        endpoint_url: S3 endpoint for MinIO, Ceph RGW, SeaweedFS, R2, ...; unset uses
            AWS S3 for ``region``.
        region: Region to sign requests for. Unset: the AWS chain (``AWS_REGION``,
            ``~/.aws/config``), else ``us-east-1``.
        addressing_style: ``path`` (``endpoint/bucket/key``), ``virtual``
            (``bucket.endpoint/key``) or ``auto``. Unset: ``path`` when
            ``endpoint_url`` is set, ``auto`` for AWS.
        access_key_id: Access key id. With ``secret_access_key``; unset uses the
            standard AWS credential chain (env, profile, web identity, instance role).
        secret_access_key: Secret access key (never logged or shown).
        session_token: Session token for temporary credentials.
        profile: Named profile from ``~/.aws/config`` to take credentials from.
        presign_expiry: Lifetime of presigned GET URLs returned by ``url_for``.
        public_base_url: Base URL of a CDN or public bucket mapped to the bucket
            root; when set, ``url_for`` returns ``<public_base_url>/<key>`` instead of
            a presigned URL.
        create_bucket: Create the bucket at start-up if it does not exist.
        max_pool_connections: Connections kept open to the endpoint; bounds how many
            requests run at once.
        retry_mode: botocore retry mode for transient errors.
        max_attempts: Attempts per request, the first one included.
        connect_timeout: Longest wait to open a connection.
        read_timeout: Longest wait for a response to start or continue.
        max_load_bytes: ``load`` refuses objects larger than this.
        verify_tls: Verify the endpoint's TLS certificate.
        ca_bundle: CA bundle (PEM) to verify the endpoint's certificate with.
    """

    bucket: str = Field(min_length=1, max_length=255)
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    profile: str | None = None
    presign_expiry: timedelta = timedelta(hours=1)
    public_base_url: str | None = None
    create_bucket: bool = False
    max_pool_connections: int = Field(32, ge=1, le=1024)
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    max_attempts: int = Field(3, ge=1, le=20)
    connect_timeout: timedelta = timedelta(seconds=5)
    read_timeout: timedelta = timedelta(seconds=30)
    max_load_bytes: int = Field(64 * 1024 * 1024, ge=1)
    verify_tls: bool = True
    ca_bundle: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _urls_hold_no_credentials(cls, data: Any) -> Any:
        # Checked on the whole table, not the field: a field error would carry the
        # URL (and its password) as the error's input, which error reports show.
        if isinstance(data, dict):
            for setting in ("endpoint_url", "public_base_url"):
                if _has_credentials(data.get(setting)):
                    raise ValueError(
                        f"{setting} must not embed credentials (user:password@ or a "
                        "secret query value such as ?token=); use access_key_id "
                        "and secret_access_key (or the AWS credential chain) instead"
                    )
        return data

    @field_validator("bucket")
    @classmethod
    def _bucket_has_no_slash(cls, value: str) -> str:
        if "/" in value or value != value.strip():
            raise ValueError("a bucket name has no '/' and no surrounding spaces")
        return value

    @field_validator("prefix")
    @classmethod
    def _normalise_prefix(cls, value: str) -> str:
        value = value.lstrip("/")
        if value and not value.endswith("/"):
            value += "/"
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_is_http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "endpoint_url")

    @field_validator("public_base_url")
    @classmethod
    def _public_base_is_http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "public_base_url")

    @field_validator("presign_expiry")
    @classmethod
    def _expiry_within_sigv4_limit(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= MAX_PRESIGN_EXPIRY:
            raise ValueError("presign_expiry must be between 1 second and 7 days")
        return value

    @field_validator("connect_timeout", "read_timeout")
    @classmethod
    def _timeout_positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration")
        return value

    @model_validator(mode="after")
    def _keys_come_in_pairs(self) -> Self:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError(
                "set both access_key_id and secret_access_key, or neither (to use "
                "the AWS credential chain)"
            )
        if self.session_token is not None and self.access_key_id is None:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self

    @property
    def effective_addressing_style(self) -> str:
        """The addressing style in force: ``path`` for custom endpoints by default."""
        if self.addressing_style is not None:
            return self.addressing_style
        return "path" if self.endpoint_url else "auto"
