"""S3 storage: images and their JSON records as objects in one bucket.

Layout: ``<prefix><id>.<ext>`` holds the image (with its Content-Type) and
``<prefix><id>.json`` its :class:`~mcp_imagegen.ImageRecord`. Ids sort by creation
time, so S3's ascending key order is creation order; the record object is what makes
an image visible (it is written last and deleted first).

The class is assembled from one module per responsibility: :mod:`.base` (settings,
keys, one S3 call and its error mapping from :mod:`.errors`), :mod:`.client` (client
lifecycle), :mod:`.objects` (saves, loads, deletes) and :mod:`.listing` (pages,
retention, orphan sweep). aioboto3 (and botocore) are imported in
:meth:`S3Storage.start`, so loading this plugin costs nothing when another storage
is configured.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from mcp_imagegen import validate_image_id
from mcp_imagegen_s3.client import S3ClientLifecycle
from mcp_imagegen_s3.listing import S3Listing
from mcp_imagegen_s3.settings import S3StorageSettings
from mcp_imagegen_s3.tasks import S3TaskStore


class S3Storage(S3ClientLifecycle, S3Listing):
    """Keeps images in an S3 bucket (AWS, MinIO, Ceph RGW, SeaweedFS, R2, ...).

    One aioboto3 session and one client (with its connection pool) live from
    :meth:`start` to :meth:`aclose`.
    """

    name: ClassVar[str] = "s3"
    Settings: ClassVar[type[S3StorageSettings]] = S3StorageSettings

    async def url_for(self, image_id: str) -> str:
        """Return a presigned GET URL, or a ``public_base_url`` link.

        Images this instance saved, listed or read recently need no request; others
        cost one read of their record (which also proves they exist).

        Raises:
            ImageNotFoundError: if no image has this id.
        """
        validate_image_id(image_id)
        extension = self._extensions.get(image_id)
        if extension is None:
            extension = (await self.get_record(image_id)).extension
        key = f"{self._prefix}{image_id}.{extension}"
        if self.settings.public_base_url:
            return f"{self.settings.public_base_url}/{quote(key)}"
        bucket = self.settings.bucket
        expiry = int(self.settings.presign_expiry.total_seconds())

        async def presign() -> Any:
            return await self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expiry
            )

        url: str = await self._call("sign a URL for", key, presign)
        return url

    def task_store(self) -> S3TaskStore:
        """MCP task records under ``<prefix>tasks/`` (see :mod:`.tasks`)."""
        return S3TaskStore(self)
