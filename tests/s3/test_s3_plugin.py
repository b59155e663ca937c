"""The s3 storage is a plugin like any other, and cheap to load."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mcp_imagegen._app import build_service
from mcp_imagegen._config import settings_from_dict
from mcp_imagegen._plugins import load_plugins
from mcp_imagegen_s3 import S3Storage


def test_entry_point_registers_the_s3_storage_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MCP_IMAGEGEN_DISABLE_PLUGINS", raising=False)

    plugins = load_plugins()

    assert plugins.component_type("storage", "s3", key="storage.backend") is S3Storage


def test_loading_the_plugin_does_not_import_aioboto3() -> None:
    code = (
        "import sys, mcp_imagegen_s3.plugin\n"
        "print(sorted(m for m in ('aioboto3', 'aiobotocore', 'botocore') "
        "if m in sys.modules))"
    )

    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout

    assert output.strip() == "[]"


def test_storage_backend_s3_and_a_bucket_build_an_s3_storage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MCP_IMAGEGEN_DISABLE_PLUGINS", raising=False)
    settings = settings_from_dict(
        {"storage": {"backend": "s3", "s3": {"bucket": "images", "prefix": "gen"}}}
    )

    service = build_service(settings, load_plugins())

    assert isinstance(service.storage, S3Storage)
    assert service.storage.settings.prefix == "gen/"
    assert service.storage.instance_name == "s3"
