"""The plugin manager: one typed facade over pluggy.

Nothing else in mcp-imagegen calls ``pm.hook`` directly. Built-in and third-party
plugins are loaded the same way: from the ``mcp_imagegen`` entry-point group.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import pluggy
import structlog

from mcp_imagegen import hookspecs
from mcp_imagegen.errors import ConfigurationError, PluginError
from mcp_imagegen.interfaces import (
    Component,
    ImageStorage,
    InferenceBackend,
    PostProcessor,
)

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mcp_imagegen._service import ImageService
    from mcp_imagegen.models import ImageRecord

ENTRY_POINT_GROUP = "mcp_imagegen"
DISABLE_ENV_VAR = "MCP_IMAGEGEN_DISABLE_PLUGINS"

Kind = Literal["backend", "storage", "postprocessor"]
_HOOK_BY_KIND: dict[Kind, str] = {
    "backend": "register_backends",
    "storage": "register_storages",
    "postprocessor": "register_postprocessors",
}
_BASE_BY_KIND: dict[Kind, type[Component]] = {
    "backend": InferenceBackend,
    "storage": ImageStorage,
    "postprocessor": PostProcessor,
}

#: Hooks the manager calls one plugin at a time (see ``_callers_in_call_order``).
_CALLED_PER_PLUGIN = frozenset({*_HOOK_BY_KIND.values(), "image_stored"})
_HOOK_NAMES = tuple(
    name
    for name, value in vars(hookspecs).items()
    if hasattr(value, f"{ENTRY_POINT_GROUP}_spec")
)

C = TypeVar("C", bound=Component)
log = structlog.get_logger("mcp_imagegen._plugins")


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
class _Registration:
    cls: type[Component]
    plugin: str


class PluginManager:
    """Loads plugins and answers: which component types exist, and who provides them.

    Args:
        disabled: Entry-point names (or plugin names) not to load. The environment
            variable ``MCP_IMAGEGEN_DISABLE_PLUGINS`` (comma-separated) adds to it.
    """

    def __init__(self, disabled: Iterable[str] = ()) -> None:
        self._pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self._pm.add_hookspecs(hookspecs)
        env_disabled = os.environ.get(DISABLE_ENV_VAR, "")
        self.disabled = {n.strip() for n in disabled} | {
            n.strip() for n in env_disabled.split(",") if n.strip()
        }
        self.failures: list[PluginFailure] = []
        self._dists: dict[str, tuple[str | None, str | None]] = {}
        self._registry: dict[Kind, dict[str, _Registration]] | None = None
        self._callers: dict[str, list[tuple[str, pluggy.HookCaller]]] = {}

    # -- loading ---------------------------------------------------------------

    def load_entrypoints(self) -> None:
        """Import and register every plugin of the ``mcp_imagegen`` group.

        A plugin that fails to import is recorded in :attr:`failures` and logged
        as a warning; it only becomes an error if the configuration needs it.
        """
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self.disabled or self._pm.has_plugin(ep.name):
                continue
            dist = ep.dist
            dist_name = dist.name if dist else None
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time failure of third-party code
                failure = PluginFailure(
                    ep.name, dist_name, f"{type(exc).__name__}: {exc}"
                )
                self.failures.append(failure)
                log.warning(
                    "plugin_load_failed",
                    entry_point=f"{ep.name} = {ep.value}",
                    distribution=dist_name,
                    error=failure.error,
                )
                continue
            self.register(
                plugin,
                name=ep.name,
                distribution=dist_name,
                version=dist.version if dist else None,
            )

    def register(
        self,
        plugin: ModuleType | object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register a plugin object (a module or an instance with hookimpls).

        Tests use this to add inline plugins; :meth:`unregister` removes them.

        Raises:
            PluginError: if the plugin implements a hook that does not exist (a
                misspelt name), or implements a hook the manager calls once per
                plugin as a wrapper; the plugin is not registered then.
        """
        if name in self.disabled:
            return
        self._dists[name] = (distribution, version)
        try:
            self._pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self._dists.pop(name, None)
            raise PluginError(f"Plugin {self._describe(name)}: {exc}") from exc
        try:
            self._validate(plugin, name)
        except PluginError:
            self.unregister(name)
            raise
        self._registry = None
        self._callers.clear()

    def _validate(self, plugin: object, name: str) -> None:
        """Refuse hookimpls pluggy accepts but this manager cannot honour."""
        try:
            self._pm.check_pending()
        except pluggy.PluginValidationError:
            unknown = sorted(
                caller.name
                for caller in self._pm.get_hookcallers(plugin) or []
                if not caller.has_spec()
            )
            if unknown:
                raise PluginError(
                    f"Plugin {self._describe(name)} implements unknown hook(s) "
                    f"{', '.join(repr(u) for u in unknown)}{_suggest(unknown)}. "
                    f"Known hooks: {', '.join(sorted(_HOOK_NAMES))}."
                ) from None
            raise  # another plugin's pending hook: it was reported when it came
        for caller in self._pm.get_hookcallers(plugin) or []:
            if caller.name not in _CALLED_PER_PLUGIN:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                    raise PluginError(
                        f"Plugin {self._describe(name)} implements "
                        f"'{caller.name}' with wrapper=True or hookwrapper=True. "
                        f"'{caller.name}' is called once per plugin, so a wrapper "
                        "cannot wrap the other plugins' implementations; use a "
                        "plain @hookimpl (tryfirst=True or trylast=True to order "
                        "it)."
                    )

    def unregister(self, name: str) -> None:
        """Remove a plugin registered under ``name``."""
        self._pm.unregister(name=name)
        self._dists.pop(name, None)
        self._registry = None
        self._callers.clear()

    # -- component types -------------------------------------------------------

    def _collect(self) -> dict[Kind, dict[str, _Registration]]:
        if self._registry is not None:
            return self._registry
        registry: dict[Kind, dict[str, _Registration]] = {k: {} for k in _HOOK_BY_KIND}
        for kind, hook_name in _HOOK_BY_KIND.items():
            # Each plugin's part goes through pluggy's own call path (argument
            # selection, tryfirst/trylast order), one plugin at a time, so every
            # registration is attributed to the plugin that made it (needed for
            # the duplicate-name error and for ``mcp-imagegen plugins``).
            for plugin, caller in self._callers_in_call_order(hook_name):
                caller(register=self._registrar(registry[kind], kind, plugin))
        self._registry = registry
        return registry

    def _callers_in_call_order(
        self, hook_name: str
    ) -> list[tuple[str, pluggy.HookCaller]]:
        """Return ``(plugin name, hook caller of only that plugin)`` in pluggy's order.

        pluggy calls implementations in the reverse of ``get_hookimpls()`` (tryfirst
        first, trylast last); the callers are cached until a plugin (un)registers.
        """
        cached = self._callers.get(hook_name)
        if cached is not None:
            return cached
        hook: pluggy.HookCaller = getattr(self._pm.hook, hook_name)
        impls = list(reversed(hook.get_hookimpls()))
        callers = [
            (
                impl.plugin_name,
                self._pm.subset_hook_caller(
                    hook_name,
                    remove_plugins=[i.plugin for i in impls if i is not impl],
                ),
            )
            for impl in impls
        ]
        self._callers[hook_name] = callers
        return callers

    def _registrar(
        self, table: dict[str, _Registration], kind: Kind, plugin: str
    ) -> Callable[[type[Component]], None]:
        base = _BASE_BY_KIND[kind]

        def register(cls: type[Component]) -> None:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(
                    f"Plugin {self._describe(plugin)} registered {cls!r} as a {kind}, "
                    f"but it is not a subclass of {base.__name__}."
                )
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"Plugin {self._describe(plugin)} registered {cls.__name__} "
                    "without a 'name' class attribute."
                )
            if name in table:
                other = table[name].plugin
                raise PluginError(
                    f"Two plugins register a {kind} named '{name}': "
                    f"{self._describe(other)} and {self._describe(plugin)}. "
                    f"Uninstall one, or disable one with plugins.disabled or "
                    f"{DISABLE_ENV_VAR}."
                )
            table[name] = _Registration(cls, plugin)

        return register

    def _describe(self, plugin: str) -> str:
        dist, version = self._dists.get(plugin, (None, None))
        if dist:
            return f"'{plugin}' (from {dist} {version or ''})".replace(" )", ")")
        return f"'{plugin}'"

    def component_types(self, kind: Kind) -> dict[str, type[Component]]:
        """Return ``{type name: class}`` for one kind of component."""
        return {n: r.cls for n, r in self._collect()[kind].items()}

    def component_type(
        self, kind: Kind, type_name: str, *, key: str, source: str | None = None
    ) -> type[Component]:
        """Return the class registered for ``type_name``.

        Args:
            key: The configuration key that asked for it, for the error message.
            source: Where that key was set (file or environment variable), for
                the error message.

        Raises:
            ConfigurationError: if no plugin registers that type; names the plugins
                that failed to load, since one of them may be the provider.
        """
        registered = self._collect()[kind]
        if type_name in registered:
            return registered[type_name].cls
        known = ", ".join(sorted(registered)) or "none"
        where = f" [{source}]" if source else ""
        message = (
            f"{key}: unknown {kind} type '{type_name}' (available: {known}){where}."
        )
        if self.failures:
            failed = "; ".join(f"'{f.name}': {f.error}" for f in self.failures)
            message += f" Plugins that failed to load: {failed}."
        disabled = sorted(self.disabled)
        if disabled:
            message += f" Disabled plugins: {', '.join(disabled)}."
        raise ConfigurationError(message)

    # -- hooks -----------------------------------------------------------------

    def register_tools(self, server: MCPServer[Any], service: ImageService) -> None:
        """Let plugins add MCP tools to ``server``."""
        self._pm.hook.register_tools(server=server, service=service)

    async def image_stored(
        self, record: ImageRecord, *, per_listener: float | None = None
    ) -> None:
        """Announce a stored image to every listener, concurrently.

        Awaitable results are awaited, each for at most ``per_listener`` seconds (then
        cancelled); failures and timeouts are logged, never raised.
        """

        async def notify(plugin: str, caller: pluggy.HookCaller) -> None:
            try:
                # Called one plugin at a time so a failing listener cannot stop
                # the others; pluggy passes only the arguments it declares.
                for result in caller(record=record):
                    if inspect.isawaitable(result):
                        with anyio.move_on_after(per_listener) as scope:
                            await result
                        if scope.cancelled_caught:
                            log.warning(
                                "image_stored_hook_timed_out",
                                plugin=plugin,
                                image_id=record.id,
                                timeout_s=per_listener,
                            )
            except Exception as exc:  # a listener must never fail the request
                log.warning(
                    "image_stored_hook_failed",
                    plugin=plugin,
                    image_id=record.id,
                    error=f"{type(exc).__name__}: {exc}",
                )

        # One slow listener must not hold back the others.
        async with anyio.create_task_group() as group:
            for plugin, caller in self._callers_in_call_order("image_stored"):
                group.start_soon(notify, plugin, caller)

    # -- introspection ---------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        """Describe every registered plugin, its hooks and its components."""
        registry = self._collect()
        infos = []
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(
                impl_caller.name
                for impl_caller in self._pm.get_hookcallers(plugin) or []
            )
            components = {
                kind: sorted(n for n, r in table.items() if r.plugin == name)
                for kind, table in registry.items()
            }
            dist, version = self._dists.get(name, (None, None))
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


def load_plugins(disabled: Iterable[str] = ()) -> PluginManager:
    """Return a :class:`PluginManager` with every installed plugin loaded."""
    manager = PluginManager(disabled)
    manager.load_entrypoints()
    return manager
