"""The backend contract, run over the KServe backend and the real KServe server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from mcp_imagegen.testing import BackendContract
from mcp_imagegen_kserve.backend import KServeBackend

pytestmark = pytest.mark.kserve


class TestKServeBackendContract(BackendContract):
    """V1 and V2 (binary) payloads pass what every backend must do."""

    @pytest.fixture(
        params=[
            {"model": "sd-v1"},
            {"model": "sd-v2", "protocol": "v2", "binary_data": True},
        ],
        ids=["v1", "v2-binary"],
    )
    async def backend(
        self, request: pytest.FixtureRequest, backend_factory: Callable[..., Any]
    ) -> AsyncIterator[KServeBackend]:
        options = dict(request.param)
        async with backend_factory(options.pop("model"), **options) as backend:
            yield backend

    @pytest.fixture
    async def failing_backend(
        self, backend_factory: Callable[..., Any]
    ) -> AsyncIterator[KServeBackend]:
        async with backend_factory("fault-500", instance_name="broken") as backend:
            yield backend
