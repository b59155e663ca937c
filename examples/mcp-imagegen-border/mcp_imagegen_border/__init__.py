"""mcp-imagegen-border: frames every image with a solid border.

An example of a third-party plugin: one post-processing step type with its own
settings, registered through the ``mcp_imagegen`` entry point group. Use it as a
step named ``border`` (default options) or configure named steps:

.. code-block:: toml

    [postprocess.frame]
    type = "border"
    width = 24
    color = "#202020"
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from PIL import Image, ImageColor, ImageOps
from pydantic import Field, field_validator

from mcp_imagegen import (
    ComponentSettings,
    GeneratedImage,
    PostProcessingError,
    PostProcessor,
    ProcessingContext,
    hookimpl,
)
from mcp_imagegen.imaging import ImageDecodeError, encode_image, open_image


class BorderSettings(ComponentSettings):
    """Options of a ``border`` step."""

    #: Border width in pixels, on every side.
    width: int = Field(16, ge=1, le=512)
    #: Any CSS colour Pillow understands ("#ff0000", "navy", "rgb(0,0,0)").
    color: str = "#000000"

    @field_validator("color")
    @classmethod
    def _known_color(cls, value: str) -> str:
        try:
            ImageColor.getrgb(value)
        except ValueError:
            raise ValueError(f"unknown colour {value!r}") from None
        return value


class BorderStep(PostProcessor):
    """Adds a solid border around the image, keeping its format."""

    name = "border"
    Settings = BorderSettings
    settings: BorderSettings

    async def process(
        self, image: GeneratedImage, context: ProcessingContext
    ) -> GeneratedImage:
        """Return ``image`` with the border added (the image grows by 2 x width)."""
        return await anyio.to_thread.run_sync(self._frame, image)

    def _frame(self, image: GeneratedImage) -> GeneratedImage:
        try:
            decoded = open_image(image.data)
        except ImageDecodeError as exc:
            raise PostProcessingError(f"Step '{self.instance_name}': {exc}") from None
        rgb = ImageColor.getrgb(self.settings.color)
        framed: Image.Image = ImageOps.expand(
            decoded.convert("RGBA" if "A" in decoded.getbands() else "RGB"),
            border=self.settings.width,
            fill=rgb if "A" not in decoded.getbands() else (*rgb[:3], 255),
        )
        data = encode_image(framed, image.mime_type)
        return image.model_copy(
            update={"data": data, "width": framed.width, "height": framed.height}
        )


@hookimpl
def register_postprocessors(register: Callable[[type[PostProcessor]], None]) -> None:
    """Register the ``border`` step type."""
    register(BorderStep)
