"""Start-up checks: one clear error naming bucket, endpoint and S3 error code."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable

import pytest

from mcp_imagegen import ConfigurationError, StorageError
from mcp_imagegen.testing import make_record
from mcp_imagegen_s3 import S3Storage, S3StorageSettings
from tests.s3.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedServer

pytestmark = [pytest.mark.anyio, pytest.mark.s3]

Build = Callable[..., S3StorageSettings]
WRONG_SECRET = "wrong-secret-d41d8cd98f00b204e98"


async def start_error(settings: S3StorageSettings) -> Exception:
    storage = S3Storage(settings)
    with pytest.raises(Exception) as raised:
        await storage.start()
    assert storage._client is None, "a failed start must close its client"
    await storage.aclose()
    return raised.value


async def test_wrong_secret_stops_start_up_naming_bucket_endpoint_and_code(
    s3_settings: Build, seaweed: SeaweedServer
) -> None:
    error = await start_error(s3_settings(secret_access_key=WRONG_SECRET))

    message = str(error)
    assert isinstance(error, ConfigurationError)
    assert "SignatureDoesNotMatch" in message
    assert "'mcp-imagegen-test'" in message
    assert seaweed.endpoint in message
    assert "secret_access_key" in message
    assert WRONG_SECRET not in message and SECRET_KEY not in message


async def test_unknown_access_key_stops_start_up_with_its_code(
    s3_settings: Build,
) -> None:
    error = await start_error(s3_settings(access_key_id="no-such-key"))

    assert isinstance(error, ConfigurationError)
    assert "InvalidAccessKeyId" in str(error)


async def test_missing_bucket_stops_start_up_and_suggests_create_bucket(
    s3_settings: Build, seaweed: SeaweedServer
) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:12]}"

    error = await start_error(s3_settings(bucket=bucket))

    message = str(error)
    assert isinstance(error, ConfigurationError)
    assert f"'{bucket}'" in message
    assert seaweed.endpoint in message
    assert "NoSuchBucket" in message
    assert "create_bucket = true" in message


async def test_missing_bucket_is_created_when_create_bucket_is_set(
    s3_settings: Build, seaweed: SeaweedServer
) -> None:
    bucket = f"created-{uuid.uuid4().hex[:12]}"

    async with S3Storage(s3_settings(bucket=bucket, create_bucket=True)) as storage:
        record, data = make_record()
        await storage.save(record, data)
        stored = await storage.load(record.id)

    seaweed.client().head_bucket(Bucket=bucket)
    assert stored.data == data


async def test_create_bucket_accepts_an_existing_bucket(s3_settings: Build) -> None:
    async with S3Storage(s3_settings(create_bucket=True)) as storage:
        assert (await storage.list()).items == []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_endpoint_stops_start_up_naming_it(
    s3_settings: Build,
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"

    error = await start_error(
        s3_settings(endpoint_url=endpoint, max_attempts=1, connect_timeout="PT2S")
    )

    message = str(error)
    assert isinstance(error, StorageError)
    assert endpoint in message
    assert "'mcp-imagegen-test'" in message
    assert "EndpointConnectionError" in message


@pytest.fixture
def no_aws_chain(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """An empty AWS credential chain: no env keys, no files, no instance metadata."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    # Never ask 169.254.169.254: tests talk to loopback only.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_aws_chain")
async def test_no_credentials_anywhere_stops_start_up_saying_where_to_set_them(
    s3_settings: Build,
) -> None:
    error = await start_error(s3_settings(access_key_id=None, secret_access_key=None))

    message = str(error)
    assert isinstance(error, ConfigurationError)
    assert "NoCredentialsError" in message
    assert "MCP_IMAGEGEN_STORAGE__S3__ACCESS_KEY_ID" in message


@pytest.mark.usefixtures("no_aws_chain")
async def test_credentials_come_from_the_aws_chain_when_the_table_has_none(
    s3_settings: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)

    settings = s3_settings(access_key_id=None, secret_access_key=None)
    async with S3Storage(settings) as storage:
        record, data = make_record()
        await storage.save(record, data)

        assert (await storage.load(record.id)).data == data


@pytest.mark.usefixtures("no_aws_chain")
async def test_unknown_profile_stops_start_up_naming_the_setting(
    s3_settings: Build,
) -> None:
    settings = s3_settings(access_key_id=None, secret_access_key=None, profile="nope")

    error = await start_error(settings)

    assert isinstance(error, ConfigurationError)
    assert "ProfileNotFound" in str(error)
    assert "storage.s3.profile" in str(error)
