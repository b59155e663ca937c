"""Shared fixtures for the whole suite."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from PIL import Image

from mcp_imagegen import ImageRecord, new_image_id
from mcp_imagegen._config import Settings, settings_from_dict
from mcp_imagegen._plugins import DISABLE_ENV_VAR, PluginManager, load_plugins

#: The installed console script, run as a subprocess by CLI and stdio tests.
MCP_IMAGEGEN_BIN = Path(sys.executable).with_name("mcp-imagegen")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` updated with ``extra``, merging nested tables."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def image_size(data: bytes) -> tuple[int, int]:
    """Return ``(width, height)`` of encoded image bytes (any format Pillow reads)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def png_bytes(color: tuple[int, int, int] = (10, 200, 30), size: int = 16) -> bytes:
    """A small solid-colour PNG."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_record(
    data: bytes, *, image_id: str | None = None, **fields: Any
) -> ImageRecord:
    """A record for ``data`` (a 16x16 PNG unless ``fields`` say otherwise)."""
    return ImageRecord.model_validate(
        {
            "id": new_image_id() if image_id is None else image_id,
            "prompt": "a test square",
            "width": 16,
            "height": 16,
            "backend": "test",
            "mime_type": "image/png",
            "byte_size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            **fields,
        }
    )


#: Ids that must be refused wherever an id enters (tools, resources, storages).
BAD_IMAGE_IDS = [
    pytest.param("20261126T034442123-3f9a1c2b7d4e/x", id="slash"),
    pytest.param("../20261126T034442123-3f9a1c2b7d4e", id="dotdot-slash"),
    pytest.param("..", id="dotdot"),
    pytest.param("..\\20261126T034442123-3f9a1c2b7d4e", id="backslash"),
    pytest.param("20261126T034442123-3f9a1c2b7d4e\x00", id="nul"),
    pytest.param("2" * 500, id="500-chars"),
    pytest.param("", id="empty"),
    pytest.param("20261126T034442123-3F9A1C2B7D4E", id="upper-case"),
]


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``MCP_IMAGEGEN_*`` variables; HOME, XDG dirs and cwd inside ``tmp_path``.

    Returns ``tmp_path``; the working directory is ``tmp_path / "work"``.
    """
    for name in list(os.environ):
        if name.startswith("MCP_IMAGEGEN_"):
            monkeypatch.delenv(name)
    for name, sub in (
        ("HOME", "home"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CONFIG_HOME", "config"),
    ):
        (tmp_path / sub).mkdir(exist_ok=True)
        monkeypatch.setenv(name, str(tmp_path / sub))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    return tmp_path


def stored_file(directory: Path, image_id: str, extension: str) -> Path:
    """Where the file storage keeps ``<id>.<extension>``: a folder per day and hour."""
    day = f"{image_id[0:4]}-{image_id[4:6]}-{image_id[6:8]}"
    return directory / day / image_id[9:11] / f"{image_id}.{extension}"


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """The file storage directory of :func:`make_settings` (created on start)."""
    return tmp_path / "images"


@pytest.fixture
def make_settings(image_dir: Path) -> Callable[..., Settings]:
    """Build settings like the TOML file would, with images kept in ``image_dir``."""

    def make(data: Mapping[str, Any] | None = None) -> Settings:
        base = {"storage": {"file": {"directory": str(image_dir)}}}
        return settings_from_dict(deep_merge(base, data or {}))

    return make


@pytest.fixture
def plugin_manager(monkeypatch: pytest.MonkeyPatch) -> PluginManager:
    """Every installed plugin loaded from entry points, none disabled."""
    monkeypatch.delenv(DISABLE_ENV_VAR, raising=False)
    return load_plugins()


@pytest.fixture
def subprocess_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment for running ``mcp-imagegen`` as a child process."""
    for sub in ("home", "data", "config", "work"):
        (tmp_path / sub).mkdir(exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "LANG": "C.UTF-8",
    }


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo ``configure_logging`` (structlog and root logger) after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)
