"""The post-processor contract, run over every built-in image-ops step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mcp_imagegen import PostProcessor
from mcp_imagegen.testing import PostProcessorContract
from mcp_imagegen_imageops.convert import ConvertStep
from mcp_imagegen_imageops.crop import CropStep
from mcp_imagegen_imageops.flip import FlipStep
from mcp_imagegen_imageops.metadata import MetadataStep, StripMetadataStep
from mcp_imagegen_imageops.resize import ResizeStep
from mcp_imagegen_imageops.rotate import RotateStep
from mcp_imagegen_imageops.watermark import WatermarkStep

STEPS: dict[str, tuple[type[PostProcessor], dict[str, Any]]] = {
    "resize": (ResizeStep, {"max_side": 48}),
    "resize-cover": (ResizeStep, {"width": 40, "height": 40, "fit": "cover"}),
    "convert-webp": (ConvertStep, {"format": "webp"}),
    "convert-jpeg": (ConvertStep, {"format": "jpeg", "quality": 70}),
    "convert-png": (ConvertStep, {"format": "png"}),
    "watermark": (WatermarkStep, {"text": "contract"}),
    "metadata": (MetadataStep, {}),
    "strip_metadata": (StripMetadataStep, {}),
    "crop-box": (CropStep, {"left": 4, "top": 2, "width": 20, "height": 10}),
    "crop-aspect": (CropStep, {"aspect": "16:9", "gravity": "bottom-right"}),
    "rotate-90": (RotateStep, {"angle": 90}),
    "rotate-any": (RotateStep, {"angle": -17.5, "fill": "white", "expand": False}),
    "flip": (FlipStep, {"direction": "vertical"}),
}


class TestImageOpsStepContract(PostProcessorContract):
    """Every step type, with a few settings each, passes the shared contract."""

    @pytest.fixture(params=sorted(STEPS))
    async def step(
        self, request: pytest.FixtureRequest
    ) -> AsyncIterator[PostProcessor]:
        cls, options = STEPS[request.param]
        async with cls(cls.Settings(**options), instance_name=request.param) as step:
            yield step
