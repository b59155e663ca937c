"""Entry point of the built-in ``s3`` storage plugin (group ``mcp_imagegen``).

Importing this module is cheap: aioboto3 is imported only when an S3 storage
starts.
"""

from __future__ import annotations

from collections.abc import Callable

from mcp_imagegen import ImageStorage, hookimpl
from mcp_imagegen_s3.storage import S3Storage


@hookimpl
def register_storages(register: Callable[[type[ImageStorage]], None]) -> None:
    """Register the ``s3`` storage type."""
    register(S3Storage)
