"""The plugin manager: one typed facade over pluggy.

Nothing else in mcp-imagegen calls ``pm.hook`` directly. Built-in and third-party
plugins are loaded the same way: from the ``mcp_imagegen`` entry-point group.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio
import pluggy
import structlog

from mcp_imagegen import hookspecs
from mcp_imagegen._registry import (
    DISABLE_ENV_VAR,
    ENTRY_POINT_GROUP,
    HOOK_BY_KIND,
    Kind,
    PluginFailure,
    PluginInfo,
    Registration,
    check_hookimpls,
    describe_plugins,
    registrar,
    style_registrar,
)
from mcp_imagegen.errors import ConfigurationError, PluginError
from mcp_imagegen.interfaces import Component

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from mcp_imagegen._service import ImageService
    from mcp_imagegen.models import ImageRecord, Style

# Re-exported: the composition root, the CLI and tests import them from here.
__all__ = [
    "DISABLE_ENV_VAR",
    "ENTRY_POINT_GROUP",
    "Kind",
    "PluginFailure",
    "PluginInfo",
    "PluginManager",
    "load_plugins",
]

log = structlog.get_logger("mcp_imagegen._plugins")


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
        self._registry: dict[Kind, dict[str, Registration]] | None = None
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
            check_hookimpls(self._pm, plugin, name, self._describe)
        except PluginError:
            self.unregister(name)
            raise
        self._registry = None
        self._callers.clear()

    def unregister(self, name: str) -> None:
        """Remove a plugin registered under ``name``."""
        self._pm.unregister(name=name)
        self._dists.pop(name, None)
        self._registry = None
        self._callers.clear()

    # -- component types -------------------------------------------------------

    def _collect(self) -> dict[Kind, dict[str, Registration]]:
        if self._registry is not None:
            return self._registry
        registry: dict[Kind, dict[str, Registration]] = {k: {} for k in HOOK_BY_KIND}
        for kind, hook_name in HOOK_BY_KIND.items():
            # Each plugin's part goes through pluggy's own call path (argument
            # selection, tryfirst/trylast order), one plugin at a time, so every
            # registration is attributed to the plugin that made it (needed for
            # the duplicate-name error and for ``mcp-imagegen plugins``).
            for plugin, caller in self._callers_in_call_order(hook_name):
                caller(register=registrar(registry[kind], kind, plugin, self._describe))
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

    def styles(self) -> dict[str, tuple[Style, str]]:
        """Return ``{name: (style, provider)}`` from every ``register_styles``.

        ``provider`` describes the plugin ("'name' (from dist version)"), for
        messages about the style.

        Raises:
            PluginError: for a name registered twice, a name that is not a
                string, or a value that is not a :class:`~mcp_imagegen.Style`.
        """
        found: dict[str, tuple[Style, str]] = {}
        for plugin, caller in self._callers_in_call_order("register_styles"):
            caller(register=style_registrar(found, self._describe(plugin)))
        return found

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
        return describe_plugins(self._pm, self._collect(), self._dists)


def load_plugins(disabled: Iterable[str] = ()) -> PluginManager:
    """Return a :class:`PluginManager` with every installed plugin loaded."""
    manager = PluginManager(disabled)
    manager.load_entrypoints()
    return manager
