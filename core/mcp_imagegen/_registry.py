"""What plugins register and what they are, beside the plugin manager.

:class:`~mcp_imagegen._plugins.PluginManager` loads plugins and calls their
hooks; this module holds the rest: the component kinds and their hooks, the
per-kind registrar a ``register_*`` hook is given, the checks of a plugin's
hookimpls, and the descriptions ``mcp-imagegen plugins`` prints.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import pluggy

from mcp_imagegen import hookspecs
from mcp_imagegen.errors import PluginError
from mcp_imagegen.interfaces import (
    Component,
    ImageStorage,
    InferenceBackend,
    PostProcessor,
)
from mcp_imagegen.models import Style

ENTRY_POINT_GROUP = "mcp_imagegen"
DISABLE_ENV_VAR = "MCP_IMAGEGEN_DISABLE_PLUGINS"

Kind = Literal["backend", "storage", "postprocessor"]
HOOK_BY_KIND: dict[Kind, str] = {
    "backend": "register_backends",
    "storage": "register_storages",
    "postprocessor": "register_postprocessors",
}
_BASE_BY_KIND: dict[Kind, type[Component]] = {
    "backend": InferenceBackend,
    "storage": ImageStorage,
    "postprocessor": PostProcessor,
}

#: Hooks the manager calls one plugin at a time, so wrappers cannot wrap them.
_CALLED_PER_PLUGIN = frozenset(
    {*HOOK_BY_KIND.values(), "image_stored", "register_styles"}
)
_HOOK_NAMES = tuple(
    name
    for name, value in vars(hookspecs).items()
    if hasattr(value, f"{ENTRY_POINT_GROUP}_spec")
)

#: Turns a plugin name into "'name' (from distribution version)" for messages.
Describe = Callable[[str], str]


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin, as shown by ``mcp-imagegen plugins``."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str]
    components: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class PluginFailure:
    """An entry point that could not be imported."""

    name: str
    distribution: str | None
    error: str


@dataclass
class Registration:
    """A component class and the plugin that registered it."""

    cls: type[Component]
    plugin: str


def registrar(
    table: dict[str, Registration], kind: Kind, plugin: str, describe: Describe
) -> Callable[[type[Component]], None]:
    """The ``register`` callable one plugin's ``register_<kind>s`` hook receives.

    Args:
        table: Registrations of this kind so far, by type name; filled in.
        kind: The component kind the hook registers.
        plugin: The name of the plugin whose hook is called.
        describe: Names a plugin in error messages.

    Returns:
        A function that records a component class under its ``name`` and raises
        :class:`PluginError` for a class of the wrong base, one without a name,
        or a name another plugin registered already.
    """
    base = _BASE_BY_KIND[kind]

    def register(cls: type[Component]) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"Plugin {describe(plugin)} registered {cls!r} as a {kind}, "
                f"but it is not a subclass of {base.__name__}."
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"Plugin {describe(plugin)} registered {cls.__name__} "
                "without a 'name' class attribute."
            )
        if name in table:
            other = table[name].plugin
            raise PluginError(
                f"Two plugins register a {kind} named '{name}': "
                f"{describe(other)} and {describe(plugin)}. "
                f"Uninstall one, or disable one with plugins.disabled or "
                f"{DISABLE_ENV_VAR}."
            )
        table[name] = Registration(cls, plugin)

    return register


def style_registrar(
    found: dict[str, tuple[Style, str]], provider: str
) -> Callable[[str, Style], None]:
    """The ``register`` a plugin's ``register_styles`` hook is given.

    Args:
        found: ``{name: (style, provider)}``, filled in by the returned callable.
        provider: The plugin, described for messages.

    Raises (from the returned callable):
        PluginError: for a name registered twice, or arguments that are not
            ``(str, mcp_imagegen.Style)``.
    """

    def register(name: str, style: Style) -> None:
        if not isinstance(name, str) or not isinstance(style, Style):
            raise PluginError(
                f"Plugin {provider}: register_styles needs register(name: str, "
                f"style: mcp_imagegen.Style), got ({type(name).__name__}, "
                f"{type(style).__name__})."
            )
        if name in found:
            raise PluginError(
                f"Plugin {provider}: style '{name}' is already registered by "
                f"plugin {found[name][1]}."
            )
        found[name] = (style, provider)

    return register


def check_hookimpls(
    pm: pluggy.PluginManager, plugin: object, name: str, describe: Describe
) -> None:
    """Refuse hookimpls pluggy accepts but the plugin manager cannot honour.

    Raises:
        PluginError: for a hook that does not exist (with a close match, if
            any), or a wrapper on a hook that is called once per plugin.
    """
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        unknown = sorted(
            caller.name
            for caller in pm.get_hookcallers(plugin) or []
            if not caller.has_spec()
        )
        if unknown:
            raise PluginError(
                f"Plugin {describe(name)} implements unknown hook(s) "
                f"{', '.join(repr(u) for u in unknown)}{_suggest(unknown)}. "
                f"Known hooks: {', '.join(sorted(_HOOK_NAMES))}."
            ) from None
        raise  # another plugin's pending hook: it was reported when it came
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.name not in _CALLED_PER_PLUGIN:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                raise PluginError(
                    f"Plugin {describe(name)} implements "
                    f"'{caller.name}' with wrapper=True or hookwrapper=True. "
                    f"'{caller.name}' is called once per plugin, so a wrapper "
                    "cannot wrap the other plugins' implementations; use a "
                    "plain @hookimpl (tryfirst=True or trylast=True to order "
                    "it)."
                )


def describe_plugins(
    pm: pluggy.PluginManager,
    registry: Mapping[Kind, Mapping[str, Registration]],
    dists: Mapping[str, tuple[str | None, str | None]],
) -> list[PluginInfo]:
    """Describe every registered plugin, its hooks and its components.

    Args:
        pm: The pluggy manager holding the plugins.
        registry: The registered components by kind and type name.
        dists: ``(distribution, version)`` by plugin name, where known.

    Returns:
        One :class:`PluginInfo` per plugin, sorted by name.
    """
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        components = {
            kind: sorted(n for n, r in table.items() if r.plugin == name)
            for kind, table in registry.items()
        }
        dist, version = dists.get(name, (None, None))
        infos.append(
            PluginInfo(
                name=name,
                distribution=dist,
                version=version,
                hooks=hooks,
                components={k: v for k, v in components.items() if v},
            )
        )
    return sorted(infos, key=lambda info: info.name)


def _suggest(unknown: list[str]) -> str:
    """Return " (did you mean 'x'?)" for the first misspelt name with a close match."""
    for name in unknown:
        close = difflib.get_close_matches(name, _HOOK_NAMES, n=1)
        if close:
            return f" (did you mean '{close[0]}'?)"
    return ""
