"""Retention: expiring old images and sweeping leftovers of interrupted saves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import structlog

from mcp_imagegen.errors import MCPImageError
from mcp_imagegen.interfaces import ImageStorage, TaskStore

if TYPE_CHECKING:
    from mcp_imagegen._config import StorageSettings

log = structlog.get_logger("mcp_imagegen._service")

#: The retention loop never runs more often than this, whatever the setting.
MIN_INTERVAL_S = 1.0


class Retention:
    """Applies ``storage.max_age`` and ``storage.orphan_grace`` to a storage.

    Failures are logged, never raised: the sweeps run in the service's background
    task group, where an escaping error would stop the server.

    Args:
        storage: The storage to sweep.
        settings: The ``[storage]`` section.
    """

    def __init__(self, storage: ImageStorage, settings: StorageSettings) -> None:
        self.storage = storage
        self.settings = settings
        #: MCP task records to expire too (set by the server while it runs).
        self.task_store: TaskStore | None = None

    async def run(self) -> None:
        """Sweep now and every ``storage.cleanup_interval``, until cancelled.

        Orphans are swept even without ``max_age``.
        """
        interval = self.settings.cleanup_interval.total_seconds()
        while True:
            await self.delete_expired()
            await self.remove_orphans()
            await self.delete_expired_tasks()
            await anyio.sleep(max(interval, MIN_INTERVAL_S))

    async def remove_orphans(self) -> int:
        """Remove leftovers of interrupted saves older than ``storage.orphan_grace``."""
        cutoff = datetime.now(UTC) - self.settings.orphan_grace
        try:
            removed = await self.storage.remove_orphans(cutoff)
        except Exception as exc:
            log.warning(
                "orphan_sweep_failed",
                error=f"{type(exc).__name__}: {exc}",
                cutoff=cutoff.isoformat(),
            )
            return 0
        if removed:
            log.info("orphans_removed", count=removed, cutoff=cutoff.isoformat())
        return removed

    async def delete_expired(self) -> int:
        """Delete images older than ``storage.max_age``; return how many."""
        max_age = self.settings.max_age
        if max_age is None:
            return 0
        cutoff = datetime.now(UTC) - max_age
        try:
            deleted = await self.storage.delete_expired(cutoff)
        except MCPImageError as exc:
            log.warning("retention_failed", error=str(exc))
            return 0
        except Exception as exc:
            # An unexpected error escaping here would cancel the group's host
            # and stop the server.
            log.exception("retention_failed", error=f"{type(exc).__name__}: {exc}")
            return 0
        if deleted:
            log.info("images_expired", count=deleted, cutoff=cutoff.isoformat())
        return deleted

    async def delete_expired_tasks(self) -> int:
        """Delete MCP task records past their ttl; return how many."""
        if self.task_store is None:
            return 0
        try:
            deleted = await self.task_store.delete_expired(datetime.now(UTC))
        except Exception as exc:
            # Escaping, it would stop the server (see delete_expired).
            log.warning("task_expiry_failed", error=f"{type(exc).__name__}: {exc}")
            return 0
        if deleted:
            log.info("tasks_expired", count=deleted)
        return deleted
