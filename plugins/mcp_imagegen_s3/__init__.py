"""mcp-imagegen built-in plugin: S3 and S3-compatible storage (storage type ``s3``).

Configure it with ``[storage] backend = "s3"`` and a ``[storage.s3]`` table; see
docs/storage.md.
"""

from mcp_imagegen_s3.settings import S3StorageSettings
from mcp_imagegen_s3.storage import S3Storage

__all__ = ["S3Storage", "S3StorageSettings"]
