"""Entry point of the built-in ``imageops`` plugin: registers the step types.

Step modules (and Pillow) are imported inside the hook, so that importing this
module, e.g. to list plugins, stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable

from mcp_imagegen import PostProcessor, hookimpl


@hookimpl
def register_postprocessors(register: Callable[[type[PostProcessor]], None]) -> None:
    """Register ``resize``, ``convert``, ``watermark``, ``metadata``,
    ``strip_metadata``, ``crop``, ``rotate`` and ``flip``."""
    from mcp_imagegen_imageops.convert import ConvertStep
    from mcp_imagegen_imageops.crop import CropStep
    from mcp_imagegen_imageops.flip import FlipStep
    from mcp_imagegen_imageops.metadata import MetadataStep, StripMetadataStep
    from mcp_imagegen_imageops.resize import ResizeStep
    from mcp_imagegen_imageops.rotate import RotateStep
    from mcp_imagegen_imageops.watermark import WatermarkStep

    for step in (
        ResizeStep,
        ConvertStep,
        WatermarkStep,
        MetadataStep,
        StripMetadataStep,
        CropStep,
        RotateStep,
        FlipStep,
    ):
        register(step)
