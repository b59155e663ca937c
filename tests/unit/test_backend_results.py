"""The service refuses backend answers that do not match the request."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mcp_imagegen import (
    BadBackendResponseError,
    GeneratedImage,
    GenerationRequest,
    InferenceBackend,
    ProgressReporter,
    hookimpl,
)
from mcp_imagegen._app import build_service
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import PluginManager

pytestmark = pytest.mark.anyio


class EmptyBackend(InferenceBackend):
    """Answers every request with no images at all."""

    name = "empty"

    async def generate(
        self, request: GenerationRequest, progress: ProgressReporter
    ) -> list[GeneratedImage]:
        return []


class EmptyPlugin:
    @hookimpl
    def register_backends(
        self, register: Callable[[type[InferenceBackend]], None]
    ) -> None:
        register(EmptyBackend)


async def test_backend_returning_fewer_images_than_asked_is_a_bad_response(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    plugin_manager.register(EmptyPlugin(), name="empty-test")
    settings = make_settings({"generation": {"backend": "empty", "postprocess": []}})
    service = build_service(settings, plugin_manager)

    async with service:
        with pytest.raises(
            BadBackendResponseError, match="returned 0 images for a request of 2"
        ):
            await service.generate(GenerationRequest(prompt="a cat", num_images=2))

        page = await service.list_images()
    assert page.items == []
