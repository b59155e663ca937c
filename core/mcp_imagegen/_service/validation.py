"""Request validation: limits, backend capabilities, formats and step names."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from mcp_imagegen.errors import ConfigurationError, ValidationError
from mcp_imagegen.models import OUTPUT_FORMATS, Capabilities, GenerationRequest

if TYPE_CHECKING:
    from mcp_imagegen._config import LimitsSettings
    from mcp_imagegen.interfaces import PostProcessor

#: The largest seed a request may carry (seeds are unsigned 32-bit).
SEED_LIMIT = 2**32


def validate_request(
    request: GenerationRequest, capabilities: Capabilities, limits: LimitsSettings
) -> GenerationRequest:
    """Check a request against the limits and the backend; draw a seed if none.

    Returns:
        The request with prompts stripped, a seed, and the backend's default
        step count recorded when the request left it open.

    Raises:
        ValidationError: naming the argument, its value and what is accepted.
    """
    prompt, negative = _check_prompts(request, capabilities, limits)
    _check_size(request, capabilities, limits)
    _check_counts(request, capabilities, limits)
    seed = request.seed
    if seed is None:
        seed = secrets.randbelow(SEED_LIMIT)
    elif not 0 <= seed < SEED_LIMIT:
        raise ValidationError(f"seed {seed} is out of range: use 0 to 4294967295.")
    steps = request.steps
    if steps is None and capabilities.supports_steps:
        # The backend's default is what runs: record it in the recipe.
        steps = capabilities.default_steps
    return request.model_copy(
        update={
            "prompt": prompt,
            "negative_prompt": negative,
            "seed": seed,
            "steps": steps,
        }
    )


def _check_prompts(
    request: GenerationRequest, capabilities: Capabilities, limits: LimitsSettings
) -> tuple[str, str | None]:
    prompt = request.prompt.strip()
    if not prompt:
        raise ValidationError(
            "prompt must not be empty: describe the image to generate."
        )
    # With a style, the prompt checked is the expanded one: say so, or a
    # short prompt "over the limit" makes no sense to the caller.
    styled = (
        f" with style '{request.style}' (the style's template and negative "
        "prompt count towards the limit)"
        if request.style
        else ""
    )
    if len(prompt) > limits.max_prompt_length:
        raise ValidationError(
            f"prompt is {len(prompt)} characters long{styled}; the limit is "
            f"{limits.max_prompt_length}. Shorten it"
            + (" or use another style." if styled else ".")
        )
    negative = (request.negative_prompt or "").strip() or None
    if negative is not None:
        if not capabilities.supports_negative_prompt:
            raise ValidationError("This backend does not support negative_prompt.")
        if len(negative) > limits.max_prompt_length:
            raise ValidationError(
                f"negative_prompt is {len(negative)} characters long{styled}; the "
                f"limit is {limits.max_prompt_length}."
            )
    return prompt, negative


def _check_size(
    request: GenerationRequest, capabilities: Capabilities, limits: LimitsSettings
) -> None:
    low = max(limits.min_side, capabilities.min_side)
    high = min(limits.max_side, capabilities.max_side)
    multiple = math.lcm(limits.side_multiple, capabilities.side_multiple)
    for side, value in (("width", request.width), ("height", request.height)):
        if not low <= value <= high:
            raise ValidationError(
                f"{side} {value} is out of range: use {low} to {high} pixels."
            )
        if value % multiple:
            below = value - value % multiple
            raise ValidationError(
                f"{side} {value} is not a multiple of {multiple}: "
                f"use {max(below, low)} or {min(below + multiple, high)}."
            )
    max_pixels = min(limits.max_pixels, capabilities.max_pixels)
    if request.width * request.height > max_pixels:
        raise ValidationError(
            f"{request.width}x{request.height} is {request.width * request.height} "
            f"pixels; the limit is {max_pixels} (e.g. "
            f"{math.isqrt(max_pixels) // multiple * multiple} squared)."
        )


def _check_counts(
    request: GenerationRequest, capabilities: Capabilities, limits: LimitsSettings
) -> None:
    max_images = min(limits.max_images, capabilities.max_images)
    if not 1 <= request.num_images <= max_images:
        raise ValidationError(
            f"num_images {request.num_images} is out of range: use 1 to {max_images}."
        )
    if request.steps is not None and not 1 <= request.steps <= limits.max_steps:
        raise ValidationError(
            f"steps {request.steps} is out of range: use 1 to {limits.max_steps}."
        )
    if request.guidance_scale is not None and not 0 <= request.guidance_scale <= 50:
        raise ValidationError(
            f"guidance_scale {request.guidance_scale} is out of range: use 0 to 50."
        )


def check_output_format(output_format: str | None) -> str | None:
    """Return the format, lower-cased (``jpg`` → ``jpeg``), or ``None``.

    Raises:
        ValidationError: for a format outside ``OUTPUT_FORMATS``.
    """
    if output_format is None:
        return None
    normal = output_format.lower().strip()
    if normal == "jpg":
        normal = "jpeg"
    if normal not in OUTPUT_FORMATS:
        raise ValidationError(
            f"Unknown output_format '{output_format}': use one of "
            f"{', '.join(OUTPUT_FORMATS)}."
        )
    return normal


def resolve_chain(
    steps: Mapping[str, PostProcessor],
    names: Sequence[str],
    *,
    key: str,
    source_of: Callable[[str], str],
) -> list[PostProcessor]:
    """Map step names to post-processor instances.

    Args:
        steps: The configured steps by name.
        names: The names to resolve, in order.
        key: Where the names came from: ``generation.postprocess`` (the
            configuration) or ``postprocess`` (a request).
        source_of: Names where a configuration key was set, for the message.

    Raises:
        ConfigurationError: for an unknown step in the configuration.
        ValidationError: for an unknown step in a request.
    """
    chain = []
    for name in names:
        if name not in steps:
            known = ", ".join(sorted(steps)) or "none are installed"
            message = (
                f"{key}: unknown post-processing step '{name}' (available: {known})."
            )
            if key.startswith("generation."):
                raise ConfigurationError(
                    f"{message[:-1]} [{source_of(key)}]. List only installed steps, "
                    "or [] for none (the default chain needs the imageops plugin)."
                )
            raise ValidationError(message)
        chain.append(steps[name])
    return chain
