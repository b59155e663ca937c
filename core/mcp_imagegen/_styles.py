"""Styles: the built-in set, plugins' and the configuration's, and applying one.

Layers, later ones winning: the built-in ``styles.toml`` shipped in this package
(unless ``generation.builtin_styles`` is false), styles plugins register
(``register_styles``), then ``[styles.<name>]`` tables, which override only the
keys they set. A style with ``enabled = false`` is dropped. Names, backends and
post-processing steps are checked at start-up, so a bad style stops the server
with a message naming the table and where it came from.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Required, TypedDict, Unpack

import pydantic

from mcp_imagegen.errors import ConfigurationError, ValidationError
from mcp_imagegen.models import Style

if TYPE_CHECKING:
    from mcp_imagegen._config import LimitsSettings, Settings

#: Style names: they become MCP prompt names and enum values, so keep them plain.
STYLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: Prompt names the server uses itself; no style may take them.
RESERVED_NAMES = frozenset({"prompt-guide"})
BUILTIN_FILE = "styles.toml"


def builtin_file() -> str:
    """Where the built-in styles live, for messages."""
    return str(resources.files("mcp_imagegen").joinpath(BUILTIN_FILE))


def builtin_styles() -> dict[str, Style]:
    """Read the built-in styles shipped with the package.

    Raises:
        ConfigurationError: if the file is broken (a packaging mistake).
    """
    text = resources.files("mcp_imagegen").joinpath(BUILTIN_FILE).read_text("utf-8")
    try:
        tables = tomllib.loads(text).get("styles", {})
        return {name: Style.model_validate(table) for name, table in tables.items()}
    except (tomllib.TOMLDecodeError, pydantic.ValidationError) as exc:
        raise ConfigurationError(f"{builtin_file()}: invalid style: {exc}") from None


@dataclass(frozen=True)
class _Origin:
    """Where a style came from: its source and the keys the configuration set."""

    source: str
    configured: frozenset[str] = frozenset()


def build_styles(
    settings: Settings,
    plugin_styles: Mapping[str, tuple[Style, str]],
    backends: Collection[str],
    steps: Collection[str],
) -> dict[str, Style]:
    """Merge the built-in, plugin and configured styles and check them.

    Args:
        settings: The configuration (``[styles.*]``, ``generation.builtin_styles``).
        plugin_styles: ``{name: (style, plugin description)}`` from plugins.
        backends: The configured backend instance names.
        steps: The configured post-processing step names.

    Returns:
        The enabled styles by name, sorted by name.

    Raises:
        ConfigurationError: for a bad name, an unknown backend or step, or a
            size or step count outside ``[limits]``, naming ``styles.<name>``
            and the file, plugin or variable it came from.
    """
    styles: dict[str, Style] = {}
    origins: dict[str, _Origin] = {}
    if settings.generation.builtin_styles:
        for name, style in builtin_styles().items():
            styles[name], origins[name] = style, _Origin(builtin_file())
    for name, (style, provider) in plugin_styles.items():
        styles[name], origins[name] = style, _Origin(f"plugin {provider}")
    for name, table in settings.styles.items():
        given = table.model_dump(exclude_unset=True)
        base = styles.get(name)
        styles[name] = base.model_copy(update=given) if base else table
        source = origins[name].source if base else ""
        origins[name] = _Origin(source, frozenset(given))

    def source_of(name: str, key: str) -> str:
        origin = origins[name]
        if key in origin.configured or not origin.source:
            return settings.source_of(
                f"styles.{name}.{key}" if key else f"styles.{name}"
            )
        return origin.source

    enabled = {}
    for name in sorted(styles):
        style = styles[name]
        if not style.enabled:
            continue
        _check(name, style, backends, steps, source_of)
        _check_limits(name, style, settings.limits, source_of)
        enabled[name] = style
    return enabled


def _check(
    name: str,
    style: Style,
    backends: Collection[str],
    steps: Collection[str],
    source_of: Callable[[str, str], str],
) -> None:
    """Refuse a style the server could not offer (see :func:`build_styles`)."""
    if not STYLE_NAME.match(name) or name in RESERVED_NAMES:
        why = (
            f"'{name}' is reserved"
            if name in RESERVED_NAMES
            else "use 1-64 lower-case letters, digits, '-' or '_', starting with "
            "a letter or digit"
        )
        raise ConfigurationError(
            f"styles.{name}: invalid style name: {why} [{source_of(name, '')}]."
        )
    if style.backend is not None and style.backend not in backends:
        known = ", ".join(sorted(backends)) or "none"
        raise ConfigurationError(
            f"styles.{name}.backend: no backend instance named '{style.backend}' "
            f"(configured instances: {known}) [{source_of(name, 'backend')}]."
        )
    for step in style.postprocess or ():
        if step not in steps:
            known = ", ".join(sorted(steps)) or "none"
            raise ConfigurationError(
                f"styles.{name}.postprocess: unknown post-processing step "
                f"'{step}' (available: {known}) [{source_of(name, 'postprocess')}]."
            )


def _check_limits(
    name: str,
    style: Style,
    limits: LimitsSettings,
    source_of: Callable[[str, str], str],
) -> None:
    """Refuse defaults no request could use: every call would fail on them."""
    for key in ("width", "height"):
        value = getattr(style, key)
        if value is None:
            continue
        if not limits.min_side <= value <= limits.max_side or (
            value % limits.side_multiple
        ):
            raise ConfigurationError(
                f"styles.{name}.{key}: {value} is outside [limits]: use "
                f"{limits.min_side} to {limits.max_side} pixels, a multiple of "
                f"{limits.side_multiple} [{source_of(name, key)}]."
            )
    if style.steps is not None and style.steps > limits.max_steps:
        raise ConfigurationError(
            f"styles.{name}.steps: {style.steps} is above limits.max_steps "
            f"({limits.max_steps}) [{source_of(name, 'steps')}]."
        )


class CallArguments(TypedDict, total=False):
    """The arguments of a generation call that a style may fill or wrap."""

    prompt: Required[str]
    negative_prompt: str | None
    width: int | None
    height: int | None
    steps: int | None
    guidance_scale: float | None
    backend: str | None
    postprocess: Sequence[str] | None


@dataclass(frozen=True)
class StyledArguments:
    """A call's arguments once its style is applied; ``None`` means "default"."""

    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    backend: str | None = None
    postprocess: Sequence[str] | None = None
    #: The style applied, if any (recorded in the image's recipe).
    style: str | None = None


def apply_style(
    styles: Mapping[str, Style],
    name: str | None,
    *,
    supports_negative_prompt: Callable[[str | None], bool] = lambda _: True,
    **arguments: Unpack[CallArguments],
) -> StyledArguments:
    """Apply style ``name`` to a call's arguments; explicit arguments win.

    The style's template wraps ``prompt``; its negative prompt follows the
    caller's. Its defaults fill only the arguments the caller left ``None``.
    Generation tools (``generate_image``, image editing) all go through here.

    Args:
        styles: The enabled styles by name.
        name: The style asked for; ``None`` leaves the arguments unchanged.
        supports_negative_prompt: Whether a backend instance (``None``: the
            default) takes negative prompts; the style's negative prompt is
            left out for one that does not, rather than failing the call.

    Raises:
        ValidationError: for an unknown style, listing the known ones.
    """
    given = StyledArguments(**arguments)
    if name is None:
        return given
    style = styles.get(name)
    if style is None:
        known = ", ".join(sorted(styles)) or "none are configured"
        raise ValidationError(f"Unknown style '{name}'. Available: {known}.")
    chosen_backend = _first(given.backend, style.backend)
    negatives = [(given.negative_prompt or "").strip()]
    if style.negative_prompt and supports_negative_prompt(chosen_backend):
        negatives.append(style.negative_prompt.strip())
    return StyledArguments(
        prompt=style.apply(given.prompt),
        negative_prompt=", ".join(n for n in negatives if n) or None,
        width=_first(given.width, style.width),
        height=_first(given.height, style.height),
        steps=_first(given.steps, style.steps),
        guidance_scale=_first(given.guidance_scale, style.guidance_scale),
        backend=chosen_backend,
        postprocess=_first(given.postprocess, style.postprocess),
        style=name,
    )


def _first(given: Any, default: Any) -> Any:
    return given if given is not None else default


def describe_style(name: str, style: Style) -> dict[str, Any]:
    """A style as JSON-able data (``style://list``, the prompt guide)."""
    defaults = style.model_dump(
        include={
            "width",
            "height",
            "steps",
            "guidance_scale",
            "backend",
            "postprocess",
        },
        exclude_none=True,
    )
    return {
        "name": name,
        "description": style.description,
        "prompt": style.prompt,
        "negative_prompt": style.negative_prompt,
        "defaults": defaults,
    }
