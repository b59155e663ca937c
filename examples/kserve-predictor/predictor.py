"""A KServe predictor serving a diffusers text-to-image pipeline (V1 contract).

This is the contract mcp-imagegen's ``kserve`` backend speaks by default::

    POST /v1/models/<name>:predict
    {"instances": [{"prompt": "...", "negative_prompt": "...", "width": 1024,
                    "height": 1024, "seed": 42, "num_inference_steps": 30,
                    "guidance_scale": 7.5}]}
    -> {"predictions": [{"model_name": "<name>", "prompt": "...", "seed": 42,
                         "image": {"format": "PNG", "b64": "iVBOR..."}}]}

Every instance is generated (one image each), so the backend may use
``batch_instances = true``; the images of one request are generated one after the
other. Not run in CI: the test suite exercises the same contract against a
Pillow-rendered stand-in (tests/kserve/predictor.py).

Run locally (needs a GPU for reasonable speed)::

    pip install -r requirements.txt
    python predictor.py --model_name sdxl --model_id stabilityai/sdxl-turbo
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import logging
from typing import Any

import kserve
from kserve.errors import InvalidInput

log = logging.getLogger("diffusers-predictor")

MAX_SIDE = 2048
MAX_STEPS = 150


class DiffusersModel(kserve.Model):
    """Text-to-image with any diffusers pipeline AutoPipeline can load."""

    def __init__(self, name: str, model_id: str, device: str | None = None) -> None:
        super().__init__(name)
        self.model_id = model_id
        self.device = device
        self.pipeline: Any = None
        # One generation at a time per GPU; others queue here, while the server
        # keeps answering health checks.
        self._gpu = asyncio.Lock()

    def load(self) -> bool:
        import torch
        from diffusers import AutoPipelineForText2Image

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if device == "cuda" else torch.float32
        log.info("loading %s on %s", self.model_id, device)
        self.pipeline = AutoPipelineForText2Image.from_pretrained(
            self.model_id, torch_dtype=dtype
        ).to(device)
        self.device = device
        self.ready = True
        return self.ready

    async def predict(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("expected a non-empty 'instances' list")
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
        try:
            width = int(instance.get("width", 1024))
            height = int(instance.get("height", 1024))
            seed = int(instance.get("seed", 0))
            steps = instance.get("num_inference_steps")
            guidance = instance.get("guidance_scale")
            steps = None if steps is None else int(steps)
            guidance = None if guidance is None else float(guidance)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"bad generation argument: {exc}") from None
        if not (8 <= width <= MAX_SIDE and 8 <= height <= MAX_SIDE):
            raise InvalidInput(f"width and height must be 8 to {MAX_SIDE}")
        if width % 8 or height % 8:
            raise InvalidInput("width and height must be multiples of 8")
        if steps is not None and not 1 <= steps <= MAX_STEPS:
            raise InvalidInput(f"num_inference_steps must be 1 to {MAX_STEPS}")
        kwargs: dict[str, Any] = {
            "prompt": prompt,
            "width": width,
            "height": height,
            "seed": seed,
        }
        if instance.get("negative_prompt"):
            kwargs["negative_prompt"] = str(instance["negative_prompt"])
        if steps is not None:
            kwargs["num_inference_steps"] = steps
        if guidance is not None:
            kwargs["guidance_scale"] = guidance
        return kwargs

    def _generate(self, kwargs: dict[str, Any]) -> bytes:
        import torch

        arguments = dict(kwargs)
        seed = arguments.pop("seed")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        image = self.pipeline(**arguments, generator=generator).images[0]
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_id", default="stabilityai/sdxl-turbo")
    parser.add_argument("--device", default=None, help="cuda, cpu, mps (default: auto)")
    args, _ = parser.parse_known_args()
    model = DiffusersModel(args.model_name, args.model_id, args.device)
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
