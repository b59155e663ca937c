"""mcp-imagegen: an MCP server that turns text prompts into images.

This module is the package face: the public API for plugin authors. A plugin
imports only the public modules, never another plugin:

* :mod:`mcp_imagegen` -- this face, re-exporting what plugins need;
* :mod:`mcp_imagegen.errors` -- :class:`MCPImageError` and its subclasses;
* :mod:`mcp_imagegen.hookspecs` -- ``hookimpl`` and the hook specifications;
* :mod:`mcp_imagegen.interfaces` -- the component interfaces;
* :mod:`mcp_imagegen.models` -- requests, images, records, progress;
* :mod:`mcp_imagegen.imaging` -- guarded image decode, encode and preview;
* :mod:`mcp_imagegen.testing` -- contract suites for a plugin's own tests.

Every module whose name starts with an underscore (``mcp_imagegen._config``,
``mcp_imagegen._service``, ...) is internal and may change in any release.
``tests/test_architecture.py`` checks that the built-in plugins keep to this.
"""

from mcp_imagegen._concurrency import gather
from mcp_imagegen._ids import (
    IMAGE_ID_PATTERN,
    TASK_ID_PATTERN,
    image_id_time,
    new_image_id,
    new_task_id,
    validate_image_id,
    validate_task_id,
)
from mcp_imagegen._redaction import redact_url_text
from mcp_imagegen._storagekit import (
    ExtensionCache,
    decode_cursor,
    encode_cursor,
    id_stamp,
)
from mcp_imagegen.errors import (
    BackendError,
    BackendNotReadyError,
    BackendRejectedError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadBackendResponseError,
    BusyError,
    ConfigurationError,
    ImageNotFoundError,
    InvalidImageIdError,
    MCPImageError,
    PluginError,
    PostProcessingError,
    StorageError,
    ValidationError,
)
from mcp_imagegen.hookspecs import hookimpl
from mcp_imagegen.interfaces import (
    Component,
    ComponentSettings,
    ImageServiceAPI,
    ImageStorage,
    InferenceBackend,
    PostProcessor,
    TaskStore,
)
from mcp_imagegen.models import (
    OUTPUT_FORMATS,
    Capabilities,
    Durations,
    GeneratedImage,
    GenerationRequest,
    Health,
    ImagePage,
    ImageRecord,
    ProcessingContext,
    ProgressReporter,
    StoredImage,
    Style,
    TaskPage,
    TaskRecord,
    TaskStatus,
    ignore_progress,
)

__version__ = "0.1.0"

__all__ = [
    "IMAGE_ID_PATTERN",
    "OUTPUT_FORMATS",
    "TASK_ID_PATTERN",
    "BackendError",
    "BackendNotReadyError",
    "BackendRejectedError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BadBackendResponseError",
    "BusyError",
    "Capabilities",
    "Component",
    "ComponentSettings",
    "ConfigurationError",
    "Durations",
    "ExtensionCache",
    "GeneratedImage",
    "GenerationRequest",
    "Health",
    "ImageNotFoundError",
    "ImagePage",
    "ImageRecord",
    "ImageServiceAPI",
    "ImageStorage",
    "InferenceBackend",
    "InvalidImageIdError",
    "MCPImageError",
    "PluginError",
    "PostProcessingError",
    "PostProcessor",
    "ProcessingContext",
    "ProgressReporter",
    "StorageError",
    "StoredImage",
    "Style",
    "TaskPage",
    "TaskRecord",
    "TaskStatus",
    "TaskStore",
    "ValidationError",
    "__version__",
    "decode_cursor",
    "encode_cursor",
    "gather",
    "hookimpl",
    "id_stamp",
    "ignore_progress",
    "image_id_time",
    "new_image_id",
    "new_task_id",
    "redact_url_text",
    "validate_image_id",
    "validate_task_id",
]
