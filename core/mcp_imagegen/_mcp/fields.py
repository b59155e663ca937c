"""Argument fields built from the live configuration.

The bounds and enums only shape the schema the model sees; the service's own
checks (with their clearer messages, and aliases such as ``jpg``) stay the ones
that accept or refuse a value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import Field
from pydantic.fields import FieldInfo

from mcp_imagegen._service import ImageService
from mcp_imagegen.models import OUTPUT_FORMATS


def number_schema(**keywords: float) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` adding JSON Schema keywords to a number property."""

    def add(schema: dict[str, Any]) -> None:
        for branch in schema.get("anyOf", [schema]):
            if branch.get("type") in ("integer", "number"):
                branch.update(keywords)

    return add


def enum_schema(values: Sequence[str]) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` listing the accepted strings (or array items)."""

    def add(schema: dict[str, Any]) -> None:
        if not values:
            return
        for branch in schema.get("anyOf", [schema]):
            if branch.get("type") == "string":
                branch["enum"] = list(values)
            elif branch.get("type") == "array":
                branch["items"] = {"type": "string", "enum": list(values)}

    return add


def side(service: ImageService, name: str) -> FieldInfo:
    """``Width`` or ``Height``: the configured bounds and multiple."""
    limits, defaults = service.settings.limits, service.settings.generation
    field: FieldInfo = Field(
        description=f"{name} in pixels: {limits.min_side}-{limits.max_side}, a "
        f"multiple of {limits.side_multiple}, at most {limits.max_pixels} pixels "
        f"in all; default {getattr(defaults, name.lower())}.",
        json_schema_extra=number_schema(
            minimum=limits.min_side,
            maximum=limits.max_side,
            multipleOf=limits.side_multiple,
        ),
    )
    return field


def output_format(service: ImageService) -> FieldInfo:
    """The stored format: one of the supported formats, or the default."""
    default = service.settings.generation.output_format
    field: FieldInfo = Field(
        description="Format of the stored image: "
        f"{', '.join(OUTPUT_FORMATS)}; omit to keep the "
        + (f"configured '{default}'." if default else "backend's format."),
        json_schema_extra=enum_schema(list(OUTPUT_FORMATS)),
    )
    return field


def steps(service: ImageService, description: str) -> FieldInfo:
    """A list of post-processing steps: the loaded step names."""
    field: FieldInfo = Field(
        description=description,
        json_schema_extra=enum_schema(sorted(service.steps)),
    )
    return field


def seed(note: str = "") -> FieldInfo:
    """A seed: any 32-bit unsigned number, random when omitted."""
    field: FieldInfo = Field(
        description=f"Seed for reproducible results; random if omitted.{note}",
        json_schema_extra=number_schema(minimum=0, maximum=2**32 - 1),
    )
    return field


def guidance_scale() -> FieldInfo:
    """The guidance scale, within the range every backend accepts."""
    field: FieldInfo = Field(
        description="How strictly to follow the prompt (0-50, typically "
        "5-9). Omit for the backend's default.",
        json_schema_extra=number_schema(minimum=0, maximum=50),
    )
    return field


def chain(service: ImageService) -> FieldInfo:
    """A request's post-processing chain, which replaces the configured one."""
    default = ", ".join(service.settings.generation.postprocess) or "none"
    return steps(
        service,
        f"Post-processing steps replacing the default chain ({default}), in "
        "order; [] for none.",
    )


def wait(service: ImageService, what: str) -> FieldInfo:
    """``wait``: whether to wait up to ``server.tasks.sync_wait`` for ``what``."""
    sync_wait = int(service.settings.server.tasks.sync_wait.total_seconds())
    field: FieldInfo = Field(
        description="false: return at once with a generation_id for "
        f"get_generation instead of waiting (at most {sync_wait} s) for {what}."
    )
    return field


def inline(service: ImageService) -> FieldInfo:
    """What image data a tool returns, and the configured inline cap."""
    field: FieldInfo = Field(
        description="What image data to return: 'preview' (default, small), "
        "'full' (the stored bytes) or 'none' (link and path only). Inline "
        f"data is capped at {service.settings.server.max_inline_bytes} bytes "
        "(base64) per call; past it, previews or links are returned instead.",
    )
    return field


def style(service: ImageService) -> FieldInfo:
    """A style name: the enabled styles, with their one-line descriptions."""
    names = sorted(service.styles)
    listed = "; ".join(
        f"{name} ({service.styles[name].description.rstrip('.')})"
        if service.styles[name].description
        else name
        for name in names
    )
    field: FieldInfo = Field(
        description="A style (see the style://list resource and the prompts): "
        "wraps the prompt in the style's template, adds its negative prompt, and "
        "sets its defaults for arguments you leave out. "
        + (f"Styles: {listed}." if names else "No styles are configured."),
        json_schema_extra=enum_schema(names),
    )
    return field
