"""A KServe predictor serving a diffusers pipeline (V1 contract): text-to-image,
image-to-image and inpainting from one set of weights.

This is the contract mcp-imagegen's ``kserve`` backend speaks by default::

    POST /v1/models/<name>:predict
    {"instances": [{"prompt": "...", "negative_prompt": "...", "width": 1024,
                    "height": 1024, "seed": 42, "num_inference_steps": 30,
                    "guidance_scale": 7.5,
                    "image": "<base64 PNG>",        # optional: image-to-image
                    "mask_image": "<base64 PNG>",   # optional, with image: inpainting
                    "strength": 0.6}]}              # with image: how much changes
    -> {"predictions": [{"model_name": "<name>", "prompt": "...", "seed": 42,
                         "image": {"format": "PNG", "b64": "iVBOR..."}}]}

Without ``image`` it is text-to-image; with ``image`` image-to-image (the input is
resized to width x height when they are given and differ; without them the output
has the input's size); with ``image`` and ``mask_image`` inpainting: white mask
pixels are repainted, black ones keep the input's pixels exactly (grey blends).
The mask must have the image's size. The image-to-image and inpainting pipelines
are built ``from_pipe`` of the loaded one at start: they share its weights, so the
three modes cost the memory of one.

Every instance is generated (one image each), so the backend may use
``batch_instances = true``; the images of one request are generated one after the
other. Bad input is answered 400 (``InvalidInput``) naming the field and what is
accepted. ``HF_HUB_OFFLINE=1`` loads ``--model_id`` from a local directory or the
Hugging Face cache only. tests/diffusers runs this file on CPU with a tiny random
pipeline in a real KServe model server.

Run locally (needs a GPU for reasonable speed)::

    pip install -r requirements.txt
    python predictor.py --model_name sdxl --model_id stabilityai/sdxl-turbo
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import inspect
import io
import logging
import sys
from typing import Any

import kserve
from kserve.errors import InvalidInput
from PIL import Image, ImageOps

log = logging.getLogger("diffusers-predictor")

MAX_SIDE = 2048
MAX_STEPS = 150
#: Largest input image accepted (pixels), checked before its pixels are decoded.
MAX_INPUT_PIXELS = MAX_SIDE * MAX_SIDE
#: Largest base64 text accepted for ``image`` / ``mask_image``.
MAX_INPUT_B64 = 64 * 1024 * 1024


class ModelUnavailable(RuntimeError):
    """The model cannot be loaded (offline and not on disk)."""


class DiffusersModel(kserve.Model):
    """Text-to-image, image-to-image and inpainting with one diffusers pipeline."""

    def __init__(self, name: str, model_id: str, device: str | None = None) -> None:
        super().__init__(name)
        self.model_id = model_id
        self.device = device
        self.pipeline: Any = None
        self.image_pipeline: Any = None
        self.inpaint_pipeline: Any = None
        # One generation at a time per GPU; others queue here, while the server
        # keeps answering health checks.
        self._gpu = asyncio.Lock()

    def load(self) -> bool:
        import torch
        from diffusers import (
            AutoPipelineForImage2Image,
            AutoPipelineForInpainting,
            AutoPipelineForText2Image,
        )

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if device == "cuda" else torch.float32
        log.info("loading %s on %s", self.model_id, device)
        try:
            self.pipeline = AutoPipelineForText2Image.from_pretrained(
                self.model_id, dtype=dtype
            ).to(device)
        except OSError as exc:
            from huggingface_hub import constants

            if not constants.HF_HUB_OFFLINE:
                raise
            # diffusers only says a file is missing: name the real cause.
            raise ModelUnavailable(
                f"cannot load {self.model_id!r} with HF_HUB_OFFLINE=1: it is neither "
                "a local pipeline directory nor in the Hugging Face cache "
                f"(HF_HOME={constants.HF_HOME}); download it first or pass a "
                f"directory as --model_id ({exc})"
            ) from None
        # The same components behind two more pipelines: no second copy of the
        # weights. A model family without one of them still serves the others.
        self.image_pipeline = _from_pipe(AutoPipelineForImage2Image, self.pipeline)
        self.inpaint_pipeline = _from_pipe(AutoPipelineForInpainting, self.pipeline)
        for pipeline in (self.pipeline, self.image_pipeline, self.inpaint_pipeline):
            if pipeline is not None:
                pipeline.set_progress_bar_config(disable=True)
        self.device = device
        self.ready = True
        return self.ready

    async def predict(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("expected a non-empty 'instances' list")
        # Every instance is checked before any is generated: a bad one fails the
        # request at once instead of after minutes of work on the others.
        arguments = [self._arguments(instance) for instance in instances]
        predictions = []
        for kwargs in arguments:
            async with self._gpu:
                # The pipeline blocks for seconds: run it in a thread so the event
                # loop (health checks, other requests) stays responsive.
                png = await asyncio.to_thread(self._generate, kwargs)
            predictions.append(
                {
                    "model_name": self.name,
                    "prompt": kwargs["prompt"],
                    "seed": kwargs["seed"],
                    "image": {"format": "PNG", "b64": base64.b64encode(png).decode()},
                }
            )
        return {"predictions": predictions}

    def _arguments(self, instance: Any) -> dict[str, Any]:
        if not isinstance(instance, dict):
            raise InvalidInput("each instance must be an object")
        prompt = instance.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("'prompt' must be a non-empty string")
        image = _decode_image("image", instance.get("image"))
        mask = _decode_image("mask_image", instance.get("mask_image"))
        if mask is not None and image is None:
            raise InvalidInput("'mask_image' needs an 'image' to inpaint")
        # Without an input image the size defaults as before; with one, to its own.
        default_width, default_height = image.size if image else (1024, 1024)
        try:
            width = int(_given(instance, "width", default_width))
            height = int(_given(instance, "height", default_height))
            seed = int(instance.get("seed", 0))
            steps = instance.get("num_inference_steps")
            guidance = instance.get("guidance_scale")
            strength = instance.get("strength")
            steps = None if steps is None else int(steps)
            guidance = None if guidance is None else float(guidance)
            strength = None if strength is None else float(strength)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"bad generation argument: {exc}") from None
        # An input image sets the default size: say so when that size is refused.
        got = f"got {width}x{height}" + (
            " (the input image's size: give width and height)"
            if image is not None and (width, height) == image.size
            else ""
        )
        if not (8 <= width <= MAX_SIDE and 8 <= height <= MAX_SIDE):
            raise InvalidInput(f"width and height must be 8 to {MAX_SIDE}, {got}")
        if width % 8 or height % 8:
            raise InvalidInput(f"width and height must be multiples of 8, {got}")
        if steps is not None and not 1 <= steps <= MAX_STEPS:
            raise InvalidInput(f"num_inference_steps must be 1 to {MAX_STEPS}")
        kwargs: dict[str, Any] = {"prompt": prompt, "seed": seed}
        if image is None:
            kwargs.update(width=width, height=height)
        else:
            self._image_arguments(kwargs, image, mask, width, height, steps, strength)
        if instance.get("negative_prompt"):
            kwargs["negative_prompt"] = str(instance["negative_prompt"])
        if steps is not None:
            kwargs["num_inference_steps"] = steps
        if guidance is not None:
            kwargs["guidance_scale"] = guidance
        return kwargs

    def _image_arguments(
        self,
        kwargs: dict[str, Any],
        image: Image.Image,
        mask: Image.Image | None,
        width: int,
        height: int,
        steps: int | None,
        strength: float | None,
    ) -> None:
        pipeline = self.image_pipeline if mask is None else self.inpaint_pipeline
        if pipeline is None:
            mode = "image-to-image" if mask is None else "inpainting"
            raise InvalidInput(f"model {self.model_id!r} serves no {mode}")
        if mask is not None and mask.size != image.size:
            raise InvalidInput(
                f"'mask_image' is {mask.width}x{mask.height} but 'image' is "
                f"{image.width}x{image.height}: send a mask of the image's size"
            )
        if strength is None:
            strength = 0.6
        if not 0.0 <= strength <= 1.0:
            raise InvalidInput(f"'strength' must be 0 to 1, got {strength}")
        # diffusers runs int(steps * strength) denoising steps and fails on zero.
        if steps is None:
            steps = _default_steps(pipeline)
        if int(steps * strength) < 1:
            raise InvalidInput(
                f"'strength' x 'num_inference_steps' must reach 1 step "
                f"(got {strength} x {steps}): raise one of them"
            )
        kwargs["image"] = image.convert("RGB").resize((width, height))
        kwargs["strength"] = strength
        if mask is not None:
            kwargs["mask_image"] = mask.convert("L").resize((width, height))
            kwargs.update(width=width, height=height)

    def _generate(self, kwargs: dict[str, Any]) -> bytes:
        import torch

        arguments = dict(kwargs)
        seed = arguments.pop("seed")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        if "mask_image" in arguments:
            image = self.inpaint_pipeline(**arguments, generator=generator).images[0]
            # The VAE never gives back the exact input: paste the input's pixels
            # back where the mask is black, so "keep" means kept (grey blends).
            image = Image.composite(
                image.convert("RGB"), arguments["image"], arguments["mask_image"]
            )
        elif "image" in arguments:
            image = self.image_pipeline(**arguments, generator=generator).images[0]
        else:
            image = self.pipeline(**arguments, generator=generator).images[0]
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


def _from_pipe(auto_class: Any, pipeline: Any) -> Any:
    try:
        return auto_class.from_pipe(pipeline)
    except ValueError as exc:  # diffusers: no such pipeline for this model family
        log.warning("%s is not available: %s", auto_class.__name__, exc)
        return None


def _given(instance: dict[str, Any], key: str, default: Any) -> Any:
    value = instance.get(key)
    return default if value is None else value


def _default_steps(pipeline: Any) -> int:
    default = inspect.signature(pipeline.__call__).parameters.get("num_inference_steps")
    return default.default if default and isinstance(default.default, int) else 50


def _decode_image(field: str, value: Any) -> Image.Image | None:
    """Decode a base64 image field, checking its size before its pixels."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"'{field}' must be a base64 string (a PNG or JPEG)")
    if len(value) > MAX_INPUT_B64:
        raise InvalidInput(
            f"'{field}' is larger than {MAX_INPUT_B64} base64 characters"
        )
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]  # a data URI: its payload
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"'{field}' is not valid base64") from None
    try:
        image = Image.open(io.BytesIO(data))
    except (OSError, Image.DecompressionBombError):
        raise InvalidInput(f"'{field}' is not an image Pillow can read") from None
    # Image.open reads only the header: refuse a decompression bomb before load.
    if image.width * image.height > MAX_INPUT_PIXELS:
        raise InvalidInput(
            f"'{field}' is {image.width}x{image.height}: at most {MAX_INPUT_PIXELS} "
            "pixels are accepted"
        )
    try:
        image.load()
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError):
        raise InvalidInput(f"'{field}' is a damaged image") from None
    return ImageOps.exif_transpose(image)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_id", default="stabilityai/sdxl-turbo")
    parser.add_argument("--device", default=None, help="cuda, cpu, mps (default: auto)")
    args, _ = parser.parse_known_args()
    model = DiffusersModel(args.model_name, args.model_id, args.device)
    try:
        model.load()
    except ModelUnavailable as exc:
        sys.exit(f"diffusers-predictor: {exc}")
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
