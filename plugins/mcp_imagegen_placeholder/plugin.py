"""Entry point of the built-in placeholder backend plugin."""

from __future__ import annotations

from collections.abc import Callable

from mcp_imagegen import InferenceBackend, hookimpl
from mcp_imagegen_placeholder.backend import PlaceholderBackend


@hookimpl
def register_backends(register: Callable[[type[InferenceBackend]], None]) -> None:
    """Register the ``placeholder`` backend type."""
    register(PlaceholderBackend)
