"""The ``[storage.s3]`` table: validation, defaults, secrets (no server needed)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest

from mcp_imagegen import ConfigurationError
from mcp_imagegen._config import (
    load_settings,
    redacted_dump,
    settings_from_dict,
    validate_component_table,
)
from mcp_imagegen_s3 import S3StorageSettings

SECRET = "s3cr3t-value-never-shown"


def settings(**table: Any) -> S3StorageSettings:
    return S3StorageSettings.model_validate({"bucket": "images", **table})


def test_bucket_is_all_a_table_needs_and_defaults_are_documented_values() -> None:
    s = settings()

    assert (s.prefix, s.endpoint_url, s.region, s.public_base_url) == (
        "",
        None,
        None,
        None,
    )
    assert s.presign_expiry == timedelta(hours=1)
    assert s.create_bucket is False
    assert (s.max_pool_connections, s.retry_mode, s.max_attempts) == (32, "standard", 3)
    assert s.max_load_bytes == 64 * 1024 * 1024


def test_table_without_bucket_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="bucket"):
        S3StorageSettings.model_validate({})


@pytest.mark.parametrize(
    ("given", "stored"),
    [("", ""), ("images", "images/"), ("images/", "images/"), ("/a/b", "a/b/")],
)
def test_prefix_gets_a_trailing_slash_and_loses_a_leading_one(
    given: str, stored: str
) -> None:
    assert settings(prefix=given).prefix == stored


def test_custom_endpoint_defaults_to_path_addressing() -> None:
    assert (
        settings(endpoint_url="http://127.0.0.1:9000").effective_addressing_style
        == "path"
    )
    assert settings().effective_addressing_style == "auto"
    virtual = settings(
        endpoint_url="https://s3.example.com", addressing_style="virtual"
    )
    assert virtual.effective_addressing_style == "virtual"


@pytest.mark.parametrize(
    "table", [{"access_key_id": "AKIA"}, {"secret_access_key": SECRET}]
)
def test_keys_must_come_in_pairs(table: dict[str, str]) -> None:
    with pytest.raises(pydantic.ValidationError, match="both access_key_id and secret"):
        settings(**table)


def test_session_token_needs_keys() -> None:
    with pytest.raises(pydantic.ValidationError, match="session_token"):
        settings(session_token=SECRET)


@pytest.mark.parametrize("url", ["ftp://example.com", "example.com:9000", "http://"])
def test_endpoint_must_be_an_http_url(url: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="http:// or https://"):
        settings(endpoint_url=url)


def test_endpoint_with_embedded_credentials_is_refused_without_echoing_them() -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        settings(endpoint_url=f"https://user:{SECRET}@s3.example.com")

    assert "must not embed credentials" in str(raised.value)


def test_config_error_for_an_endpoint_with_credentials_does_not_show_them() -> None:
    config = settings_from_dict({"storage": {"backend": "s3"}})
    table = {"bucket": "b", "endpoint_url": f"https://u:{SECRET}@s3.example.com"}

    with pytest.raises(ConfigurationError) as raised:
        validate_component_table(config, S3StorageSettings, table, "storage.s3")

    assert "endpoint_url must not embed credentials" in str(raised.value)
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize("expiry", ["PT0S", "P8D", -5])
def test_presign_expiry_must_fit_sigv4_limits(expiry: object) -> None:
    with pytest.raises(pydantic.ValidationError, match="presign_expiry"):
        settings(presign_expiry=expiry)


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        settings(bukcet="typo")


def test_secrets_are_hidden_in_repr_and_dumps() -> None:
    s = settings(
        access_key_id="AKIAEXAMPLE", secret_access_key=SECRET, session_token=SECRET
    )

    assert SECRET not in repr(s)
    assert SECRET not in s.model_dump_json()
    assert s.secret_access_key is not None
    assert s.secret_access_key.get_secret_value() == SECRET


def test_invalid_table_error_names_the_key_and_hides_the_secret() -> None:
    config = settings_from_dict({"storage": {"backend": "s3"}})
    table = {"bucket": "b", "secret_access_key": SECRET}

    with pytest.raises(ConfigurationError) as raised:
        validate_component_table(config, S3StorageSettings, table, "storage.s3")

    assert "storage.s3" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_environment_variables_reach_the_s3_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("MCP_IMAGEGEN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__BACKEND", "s3")
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__S3__BUCKET", "from-env")
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__S3__ACCESS_KEY_ID", "AKIAFROMENV")
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__S3__SECRET_ACCESS_KEY", SECRET)

    config = load_settings()
    s3 = validate_component_table(
        config, S3StorageSettings, config.storage.table("s3"), "storage.s3"
    )

    assert isinstance(s3, S3StorageSettings)
    assert s3.bucket == "from-env"
    assert s3.secret_access_key is not None
    assert s3.secret_access_key.get_secret_value() == SECRET
    assert SECRET not in str(redacted_dump(config))
