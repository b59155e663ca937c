"""The image service, split by responsibility; :class:`ImageService` is its facade.

- :mod:`.validation`: request limits, output formats, step names
- :mod:`.admission`: the generation slots and busy errors
- :mod:`.pipeline`: generate and transform (with :mod:`.finishing`: the
  post-processing chain; :mod:`.saving`: records and all-or-nothing saves)
- :mod:`.retention`: expiry and the orphan sweep
- :mod:`.health`: ``describe_backends``
- :mod:`.events`: ``image_stored`` listeners in the background
- :mod:`.observer`: what the service reports for metrics (no-op by default)
- :mod:`.facade`: :class:`ImageService`, which the MCP layer and the CLI call

The package neither loads configuration nor plugins; ``mcp_imagegen._app`` builds
the service from settings and a plugin manager.
"""

from mcp_imagegen._service.facade import MAX_LIST_LIMIT, ImageService
from mcp_imagegen._service.health import HEALTH_CHECK_TIMEOUT, BackendInfo
from mcp_imagegen._service.observer import NULL_OBSERVER, ServiceObserver

__all__ = [
    "HEALTH_CHECK_TIMEOUT",
    "MAX_LIST_LIMIT",
    "NULL_OBSERVER",
    "BackendInfo",
    "ImageService",
    "ServiceObserver",
]
