"""The placeholder backend: real, deterministic images without any model.

It exists so the server works out of the box — for trying the server and MCP
clients, for CI and for mock-ups. It draws a seeded abstract composition and the
prompt text with Pillow. The same (prompt, negative prompt, seed, width, height)
always give the same bytes; another seed gives a visibly different image.

It edits too (``image_input`` and ``mask``): the drawing is laid over the input
image with opacity ``strength``, so the input shows through by ``1 - strength``;
a mask scales that opacity per pixel (white = change, black = keep exactly).
"""

from __future__ import annotations

import hashlib
import os
import random
import textwrap
from functools import lru_cache
from typing import IO, cast

import anyio
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field

from mcp_imagegen import (
    Capabilities,
    ComponentSettings,
    GeneratedImage,
    GenerationRequest,
    InferenceBackend,
    ProgressReporter,
)
from mcp_imagegen.imaging import mark_encoded, open_image

MODEL_NAME = "placeholder-v1"
#: Strength of an edit whose request names none.
DEFAULT_STRENGTH = 0.6


class PlaceholderSettings(ComponentSettings):
    """``[backends.placeholder]``."""

    #: Steps used when a request gives none; one progress report per step.
    default_steps: int = Field(4, ge=1, le=50)
    #: Sleep this long per step, to demo progress and cancellation in clients.
    delay_ms: int = Field(0, ge=0, le=60_000)


class PlaceholderBackend(InferenceBackend):
    """Draws deterministic placeholder images (no model involved)."""

    name = "placeholder"
    Settings = PlaceholderSettings
    settings: PlaceholderSettings

    @property
    def capabilities(self) -> Capabilities:
        """Everything the server's limits allow; steps capped at 50; edits."""
        return Capabilities(
            default_steps=self.settings.default_steps,
            models=[MODEL_NAME],
            image_input=True,
            mask=True,
        )

    _cpu: anyio.CapacityLimiter | None = None

    def _cpu_limiter(self) -> anyio.CapacityLimiter:
        """One worker thread per core for drawing and encoding, at most.

        Every call draws in this process, CPU-bound. Four 2048² calls at once
        ran four such threads on a 2-core machine: they finish no sooner than
        two, and the event loop had to win a core and the GIL from all four.
        Made on first use, inside the running event loop.
        """
        if self._cpu is None:
            self._cpu = anyio.CapacityLimiter(max(1, os.cpu_count() or 1))
        return self._cpu

    async def generate(
        self, request: GenerationRequest, progress: ProgressReporter
    ) -> list[GeneratedImage]:
        """Draw ``request.num_images`` images, reporting each step."""
        steps = min(request.steps or self.settings.default_steps, 50)
        cpu = self._cpu_limiter()
        total = steps * request.num_images
        images = []
        for index in range(request.num_images):
            seed = request.seed_for(index)
            # Even the blank canvas costs tens of ms at 2048²: build it off the loop.
            canvas = await anyio.to_thread.run_sync(_Canvas, request, seed, limiter=cpu)
            for step in range(steps):
                # Each step draws a share of the shapes in a worker thread, so the
                # event loop (progress, cancellation, other calls) stays free.
                await anyio.to_thread.run_sync(
                    canvas.draw_step, step, steps, limiter=cpu
                )
                if self.settings.delay_ms:
                    await anyio.sleep(self.settings.delay_ms / 1000)
                done = index * steps + step + 1
                await progress(
                    done, total, f"image {index + 1}: step {step + 1}/{steps}"
                )
            data = await anyio.to_thread.run_sync(canvas.finish, limiter=cpu)
            # Pillow's encoder wrote it just now: the metadata step need not
            # inflate it again to prove it whole (see mark_encoded).
            images.append(
                mark_encoded(
                    GeneratedImage(
                        data=data,
                        mime_type="image/png",
                        width=request.width,
                        height=request.height,
                        seed=seed,
                        model=MODEL_NAME,
                        parameters={"steps": steps},
                    )
                )
            )
        return images


class _Canvas:
    """One image being drawn, step by step."""

    SHAPES = 24

    def __init__(self, request: GenerationRequest, seed: int) -> None:
        key = "\x00".join(
            [request.prompt, request.negative_prompt or "", str(seed)]
        ).encode()
        self.rng = random.Random(hashlib.sha256(key).digest())
        self.request = request
        self.image = _gradient(request.width, request.height, self.rng)
        self.draw = ImageDraw.Draw(self.image, "RGBA")

    def draw_step(self, step: int, steps: int) -> None:
        width, height = self.image.size
        share = range(step * self.SHAPES // steps, (step + 1) * self.SHAPES // steps)
        for _ in share:
            x, y = self.rng.uniform(0, width), self.rng.uniform(0, height)
            radius = self.rng.uniform(0.04, 0.25) * min(width, height)
            color = (*_random_color(self.rng), self.rng.randint(60, 160))
            box = (x - radius, y - radius, x + radius, y + radius)
            if self.rng.random() < 0.5:
                self.draw.ellipse(box, fill=color)
            else:
                self.draw.rectangle(box, fill=color)

    def finish(self) -> bytes:
        self._draw_caption()
        if self.request.image is not None:
            self.image = _edit(self.image, self.request)
        pieces = _Pieces()
        # Level 1 encodes several times faster than the default 6; placeholder
        # images are flat shapes, so the files stay small anyway.
        # Only write() is used: Pillow casts its own chunk writers alike.
        self.image.save(cast("IO[bytes]", pieces), format="PNG", compress_level=1)
        # One copy, with the GIL released (bytes.join does past 1 MB).
        return b"".join(pieces)

    def _draw_caption(self) -> None:
        width, height = self.image.size
        size = max(10, min(width, height) // 18)
        font = _font(size)
        chars_per_line = max(8, int(width / (size * 0.55)))
        lines = textwrap.wrap(self.request.prompt, chars_per_line)[:6]
        if len(textwrap.wrap(self.request.prompt, chars_per_line)) > 6:
            lines[-1] = lines[-1][: max(0, chars_per_line - 1)] + "…"
        text = "\n".join(lines)
        box = self.draw.multiline_textbbox((0, 0), text, font=font, spacing=4)
        text_w, text_h = box[2] - box[0], box[3] - box[1]
        margin = size // 2
        left = max(margin, (width - text_w) // 2)
        top = height - text_h - 3 * margin
        self.draw.rectangle(
            (
                left - margin,
                top - margin,
                left + text_w + margin,
                top + text_h + margin,
            ),
            fill=(0, 0, 0, 150),
        )
        self.draw.multiline_text(
            (left, top), text, font=font, fill=(255, 255, 255, 255), spacing=4
        )
        label = "placeholder · no model"
        self.draw.text((margin, margin), label, font=font, fill=(255, 255, 255, 200))


class _Pieces(list[bytes]):
    """A write-only file that keeps what is written, uncopied.

    Pillow's PNG writer holds the GIL while it writes each 64 KB chunk; into a
    ``BytesIO`` every write copies, and a growing buffer is copied again and
    again, the GIL held throughout: a few megabytes of photo-like edit output
    stalled the event loop. ``b"".join`` copies once, and drops the GIL to do it.
    """

    def write(self, data: bytes) -> int:
        self.append(bytes(data))  # Pillow may pass a view it reuses
        return len(data)


def _edit(drawn: Image.Image, request: GenerationRequest) -> Image.Image:
    """``drawn`` laid over the request's image: opacity strength, times the mask."""
    assert request.image is not None
    size = drawn.size
    source = open_image(request.image)
    if source.mode != "RGB":  # convert() would copy even an RGB image
        source = source.convert("RGB")
    if source.size != size:  # the service sizes it; another caller may not
        source = source.resize(size, Image.Resampling.LANCZOS)
    strength = DEFAULT_STRENGTH if request.strength is None else request.strength
    opacity = round(255 * min(1.0, max(0.0, strength)))
    if request.mask is None:
        change = Image.new("L", size, opacity)
    else:
        mask = open_image(request.mask).convert("L")
        if mask.size != size:
            mask = mask.resize(size, Image.Resampling.BILINEAR)
        change = mask.point([value * opacity // 255 for value in range(256)])
    # Where change is 0 the input's pixel is kept exactly.
    return Image.composite(drawn, source, change)


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _random_color(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)


def _gradient(width: int, height: int, rng: random.Random) -> Image.Image:
    """A vertical two-colour gradient, built without per-pixel Python loops."""
    top, bottom = _random_color(rng), _random_color(rng)
    column = Image.new("RGB", (1, 256))
    column.putdata(
        [
            tuple(int(a + (b - a) * i / 255) for a, b in zip(top, bottom, strict=True))
            for i in range(256)
        ]
    )
    return column.resize((width, height), Image.Resampling.BILINEAR)
