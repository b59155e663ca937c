"""Entry point of the built-in file storage plugin."""

from __future__ import annotations

from collections.abc import Callable

from mcp_imagegen import ImageStorage, hookimpl
from mcp_imagegen_file.storage import FileStorage


@hookimpl
def register_storages(register: Callable[[type[ImageStorage]], None]) -> None:
    """Register the ``file`` storage type."""
    register(FileStorage)
