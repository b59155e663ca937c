"""Entry point of the built-in ``kserve`` backend plugin."""

from __future__ import annotations

from collections.abc import Callable

from mcp_imagegen import InferenceBackend, hookimpl
from mcp_imagegen_kserve.backend import KServeBackend


@hookimpl
def register_backends(register: Callable[[type[InferenceBackend]], None]) -> None:
    """Register the ``kserve`` backend type (KServe V1/V2 and Triton models)."""
    register(KServeBackend)
