"""mcp-imagegen: an MCP server that turns text prompts into images.

This module is the public API for plugin authors. Plugins import only from here
(and from :mod:`mcp_imagegen.imaging` and :mod:`mcp_imagegen.testing`), never from
other plugins or core internals.
"""

from mcp_imagegen._config import redact_url_text
from mcp_imagegen._ids import (
    IMAGE_ID_PATTERN,
    image_id_time,
    new_image_id,
    validate_image_id,
)
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
    ImageStorage,
    InferenceBackend,
    PostProcessor,
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
    ignore_progress,
)

__version__ = "0.1.0"

__all__ = [
    "IMAGE_ID_PATTERN",
    "OUTPUT_FORMATS",
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
    "ValidationError",
    "__version__",
    "decode_cursor",
    "encode_cursor",
    "hookimpl",
    "id_stamp",
    "ignore_progress",
    "image_id_time",
    "new_image_id",
    "redact_url_text",
    "validate_image_id",
]
