"""Error types raised by mcp-imagegen and its plugins.

Every error carries a message a user can act on. None of them may contain a secret
(tokens, keys, credentials embedded in URLs): the MCP surface shows ``str(error)`` to
the client as is.
"""

from __future__ import annotations


class MCPImageError(Exception):
    """Base class of every error mcp-imagegen raises on purpose."""


class ValidationError(MCPImageError):
    """A request argument is outside what the server or backend accepts."""


class InvalidImageIdError(ValidationError):
    """An image id does not match the server's id pattern."""


class BusyError(MCPImageError):
    """All generation slots stayed busy for longer than the configured wait."""


class ConfigurationError(MCPImageError):
    """The configuration is invalid (bad key, bad value, unknown component)."""


class PluginError(MCPImageError):
    """A plugin failed to load or two plugins claim the same component name."""


class BackendError(MCPImageError):
    """An inference backend failed to produce images."""


class BackendUnavailableError(BackendError):
    """The backend could not be reached (connection refused, DNS, TLS)."""


class BackendTimeoutError(BackendError):
    """The backend did not answer within the configured time."""


class BackendNotReadyError(BackendError):
    """The backend (or its model) is up but not ready yet, e.g. a cold start."""


class BackendRejectedError(BackendError):
    """The backend refused the request (a 4xx answer)."""


class BadBackendResponseError(BackendError):
    """The backend answered, but the answer holds no usable image."""


class PostProcessingError(MCPImageError):
    """A post-processing step failed or was given invalid options."""


class StorageError(MCPImageError):
    """A storage operation failed."""


class ImageNotFoundError(StorageError):
    """No stored image has the requested id."""

    def __init__(self, image_id: str) -> None:
        super().__init__(f"No image with id '{image_id}' exists.")
        self.image_id = image_id
