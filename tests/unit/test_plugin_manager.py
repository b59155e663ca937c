"""The plugin manager: discovery, registration, disabling, failures, events."""

from __future__ import annotations

import io
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import anyio.lowlevel
import pytest
from PIL import Image
from structlog.testing import capture_logs

from mcp_imagegen import (
    ComponentSettings,
    ConfigurationError,
    GeneratedImage,
    GenerationRequest,
    ImageRecord,
    InferenceBackend,
    PluginError,
    ProgressReporter,
    hookimpl,
)
from mcp_imagegen import _plugins as plugins_module
from mcp_imagegen._app import build_service
from mcp_imagegen._config import Settings
from mcp_imagegen._plugins import DISABLE_ENV_VAR, PluginManager, load_plugins
from mcp_imagegen._service import ImageService
from mcp_imagegen_file.storage import FileStorage
from mcp_imagegen_placeholder.backend import PlaceholderBackend

pytestmark = pytest.mark.anyio


class _TwinBackend(InferenceBackend):
    """A backend type whose name collides between two test plugins."""

    name = "twin"

    async def generate(
        self, request: GenerationRequest, progress: ProgressReporter
    ) -> list[GeneratedImage]:
        raise NotImplementedError


class _TwinPlugin:
    @hookimpl
    def register_backends(self, register: Callable[[type[Any]], None]) -> None:
        register(_TwinBackend)


class _SyncListener:
    """An ``image_stored`` listener with a plain function, optionally failing."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[str] = []

    def _handle(self, record: ImageRecord) -> None:
        self.seen.append(record.id)
        if self.fail:
            raise RuntimeError("listener exploded")

    @hookimpl
    def image_stored(self, record: ImageRecord) -> None:
        self._handle(record)


class _AsyncListener(_SyncListener):
    """The same listener as an ``async def`` (its coroutine is awaited)."""

    @hookimpl
    async def image_stored(self, record: ImageRecord) -> None:  # type: ignore[override]
        await anyio.lowlevel.checkpoint()
        self._handle(record)


LISTENERS = {"sync": _SyncListener, "async": _AsyncListener}


# -- discovery -------------------------------------------------------------------


def test_built_in_components_are_discovered_through_entry_points(
    plugin_manager: PluginManager,
) -> None:
    backends = plugin_manager.component_types("backend")
    storages = plugin_manager.component_types("storage")

    assert backends["placeholder"] is PlaceholderBackend
    assert storages["file"] is FileStorage


def test_built_in_plugins_are_attributed_to_the_mcp_imagegen_distribution(
    plugin_manager: PluginManager,
) -> None:
    infos = {info.name: info for info in plugin_manager.plugins()}

    assert infos["placeholder"].distribution == "mcp-imagegen"
    assert infos["placeholder"].components == {"backend": ["placeholder"]}
    assert infos["file"].hooks == ["register_storages"]


def test_example_border_plugin_is_discovered_from_its_own_distribution(
    plugin_manager: PluginManager,
) -> None:
    infos = {info.name: info for info in plugin_manager.plugins()}

    assert infos["border"].distribution == "mcp-imagegen-border"
    assert infos["border"].components == {"postprocessor": ["border"]}


async def test_example_border_step_configured_from_toml_table_frames_the_image(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    settings = make_settings(
        {
            "postprocess": {
                "frame": {"type": "border", "width": 5, "color": "#ff0000"}
            },
            "generation": {"postprocess": ["frame"]},
        }
    )

    async with build_service(settings, plugin_manager) as service:
        [generated] = await service.generate(
            GenerationRequest(prompt="a framed cat", width=64, height=72)
        )
        record = generated.record
        stored = await service.load(record.id)

    image = Image.open(io.BytesIO(stored.data)).convert("RGB")
    assert (record.width, record.height) == (74, 82)
    assert image.size == (74, 82)
    assert record.postprocess == ["frame"]
    for x, y in [(0, 0), (4, 40), (73, 81), (40, 0), (69, 77)]:
        assert image.getpixel((x, y)) == (255, 0, 0)


def test_example_border_step_rejects_an_unknown_option_naming_the_key(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    settings = make_settings({"postprocess": {"frame": {"type": "border", "size": 3}}})

    with pytest.raises(ConfigurationError, match=r"postprocess\.frame\.size"):
        build_service(settings, plugin_manager)


# -- disabling -------------------------------------------------------------------


def test_plugins_disabled_in_config_are_not_loaded(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DISABLE_ENV_VAR, raising=False)
    settings = make_settings({"plugins": {"disabled": ["border"]}})

    manager = load_plugins(settings.plugins.disabled)

    assert "border" not in {info.name for info in manager.plugins()}
    assert "border" not in manager.component_types("postprocessor")


def test_plugins_disabled_by_environment_variable_are_not_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DISABLE_ENV_VAR, "border, placeholder")

    manager = load_plugins()

    names = {info.name for info in manager.plugins()}
    assert not names & {"border", "placeholder"}
    assert "file" in names


def test_config_needing_a_disabled_plugin_fails_naming_the_disabled_plugin(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DISABLE_ENV_VAR, raising=False)
    settings = make_settings(
        {
            "plugins": {"disabled": ["border"]},
            "postprocess": {"frame": {"type": "border"}},
        }
    )

    with pytest.raises(ConfigurationError) as caught:
        build_service(settings)

    assert "postprocess.frame.type" in str(caught.value)
    assert "Disabled plugins: border" in str(caught.value)


def test_disabled_plugin_is_not_registered_inline_either() -> None:
    manager = PluginManager(disabled=["twin"])

    manager.register(_TwinPlugin(), name="twin")

    assert "twin" not in manager.component_types("backend")


# -- duplicates and broken plugins -----------------------------------------------


def test_two_plugins_registering_the_same_name_is_an_error_naming_both() -> None:
    manager = PluginManager()
    manager.register(_TwinPlugin(), name="one", distribution="pkg-one", version="1.0")
    manager.register(_TwinPlugin(), name="two", distribution="pkg-two", version="2.0")

    with pytest.raises(PluginError) as caught:
        manager.component_types("backend")

    message = str(caught.value)
    assert "'twin'" in message
    assert "pkg-one 1.0" in message
    assert "pkg-two 2.0" in message


def test_registering_a_class_of_the_wrong_kind_is_an_error_naming_the_plugin() -> None:
    class WrongKind:
        @hookimpl
        def register_storages(self, register: Callable[[type[Any]], None]) -> None:
            register(_TwinBackend)

    manager = PluginManager()
    manager.register(WrongKind(), name="confused")

    with pytest.raises(
        PluginError, match=r"'confused'.*not a subclass of ImageStorage"
    ):
        manager.component_types("storage")


@pytest.fixture
def broken_entry_point(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> metadata.EntryPoint:
    """An extra ``mcp_imagegen`` entry point whose module raises on import."""
    (tmp_path / "broken_imagegen_plugin.py").write_text(
        'raise RuntimeError("broken on purpose")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = metadata.EntryPoint(
        name="broken", value="broken_imagegen_plugin", group="mcp_imagegen"
    )
    real_entry_points = metadata.entry_points

    def entry_points(**selection: Any) -> Any:
        found = list(real_entry_points(**selection))
        if selection.get("group") == "mcp_imagegen":
            found.append(broken)
        return found

    monkeypatch.setattr(plugins_module.metadata, "entry_points", entry_points)
    monkeypatch.delenv(DISABLE_ENV_VAR, raising=False)
    return broken


def test_entry_point_failing_to_import_is_a_warning_naming_it(
    broken_entry_point: metadata.EntryPoint,
) -> None:
    with capture_logs() as logs:
        manager = load_plugins()

    [warning] = [
        e
        for e in logs
        if e["event"] == "plugin_load_failed" and e["entry_point"].startswith("broken")
    ]
    assert warning["log_level"] == "warning"
    assert warning["entry_point"] == "broken = broken_imagegen_plugin"
    assert "broken on purpose" in warning["error"]
    assert [f.name for f in manager.failures if f.name == "broken"] == ["broken"]


def test_broken_entry_point_does_not_stop_a_config_that_does_not_need_it(
    broken_entry_point: metadata.EntryPoint, make_settings: Callable[..., Settings]
) -> None:
    manager = load_plugins()

    service = build_service(make_settings(), manager)

    assert set(service.backends) == {"placeholder"}


def test_config_needing_a_type_a_broken_plugin_may_provide_fails_naming_it(
    broken_entry_point: metadata.EntryPoint, make_settings: Callable[..., Settings]
) -> None:
    manager = load_plugins()
    settings = make_settings({"backends": {"fancy": {"type": "broken"}}})

    with pytest.raises(ConfigurationError) as caught:
        build_service(settings, manager)

    message = str(caught.value)
    assert "backends.fancy.type" in message
    assert "unknown backend type 'broken'" in message
    assert "'broken': RuntimeError: broken on purpose" in message


def test_disabled_broken_entry_point_is_never_imported(
    broken_entry_point: metadata.EntryPoint,
) -> None:
    manager = load_plugins(disabled=["broken"])

    assert [f for f in manager.failures if f.name == "broken"] == []


# -- inline plugins ----------------------------------------------------------------


def test_inline_plugin_components_appear_and_disappear_with_registration() -> None:
    manager = PluginManager()

    manager.register(_TwinPlugin(), name="inline")
    registered = manager.component_types("backend")
    manager.unregister("inline")
    unregistered = manager.component_types("backend")

    assert registered == {"twin": _TwinBackend}
    assert unregistered == {}


def test_inline_plugin_settings_table_is_validated_by_its_own_model(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    class Configurable(_TwinBackend):
        name = "configurable"

        class Settings(ComponentSettings):
            depth: int = 1

    class Plugin:
        @hookimpl
        def register_backends(self, register: Callable[[type[Any]], None]) -> None:
            register(Configurable)

    plugin_manager.register(Plugin(), name="configurable-plugin")
    settings = make_settings(
        {"backends": {"deep": {"type": "configurable", "depth": 7}}}
    )

    service = build_service(settings, plugin_manager)

    backend = service.backends["deep"]
    assert isinstance(backend, Configurable)
    assert backend.instance_name == "deep"
    assert backend.settings.depth == 7  # type: ignore[attr-defined]


# -- image_stored ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_image_stored_listener_is_called_once_per_stored_image(
    mode: str,
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
) -> None:
    listener = LISTENERS[mode]()
    plugin_manager.register(listener, name="listener")

    async with build_service(make_settings(), plugin_manager) as service:
        images = await service.generate(
            GenerationRequest(prompt="two cats", width=64, height=64, num_images=2)
        )

    assert sorted(listener.seen) == sorted(image.record.id for image in images)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_failing_image_stored_listener_does_not_fail_the_request(
    mode: str,
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
) -> None:
    failing = LISTENERS[mode](fail=True)
    healthy = _SyncListener()
    plugin_manager.register(failing, name="failing-listener")
    plugin_manager.register(healthy, name="healthy-listener")

    with capture_logs() as logs:
        async with build_service(make_settings(), plugin_manager) as service:
            [generated] = await service.generate(
                GenerationRequest(prompt="a cat", width=64, height=64)
            )
            record = generated.record
            stored = await service.load(record.id)

    assert stored.record.id == record.id
    assert failing.seen == [record.id]
    assert healthy.seen == [record.id]
    [warning] = [e for e in logs if e["event"] == "image_stored_hook_failed"]
    assert warning["plugin"] == "failing-listener"
    assert "listener exploded" in warning["error"]


async def test_image_stored_listener_may_take_no_arguments_like_any_pluggy_hook(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    calls: list[str] = []

    class CacheBuster:
        @hookimpl
        def image_stored(self) -> None:
            calls.append("called")

    plugin_manager.register(CacheBuster(), name="cache-buster")

    async with build_service(make_settings(), plugin_manager) as service:
        await service.generate(GenerationRequest(prompt="a cat", width=64, height=64))

    assert calls == ["called"]


class _ToolPlugin:
    registered_with: ClassVar[list[Any]] = []

    @hookimpl
    def register_tools(self, server: Any, service: ImageService) -> None:
        @server.tool()
        def ping() -> str:
            """Answer pong."""
            return "pong"

        self.registered_with.append(service)


def test_register_tools_hook_receives_the_server_and_the_service(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    from mcp_imagegen._app import create_server

    plugin_manager.register(_ToolPlugin(), name="tools")

    server = create_server(make_settings(), plugin_manager)

    assert _ToolPlugin.registered_with == [server.service]
    _ToolPlugin.registered_with.clear()


# -- hooks are called through pluggy ---------------------------------------------


def test_tryfirst_and_trylast_registrations_run_in_pluggy_order() -> None:
    calls: list[str] = []

    def plugin(label: str, **marks: bool) -> object:
        class Plugin:
            @hookimpl(**marks)
            def register_backends(self) -> None:
                calls.append(label)

        return Plugin()

    manager = PluginManager()
    manager.register(plugin("first", tryfirst=True), name="first")
    manager.register(plugin("last", trylast=True), name="last")
    manager.register(plugin("plain-a"), name="plain-a")
    manager.register(plugin("plain-b"), name="plain-b")

    manager.component_types("backend")

    # pluggy's order: tryfirst, then the others last registered first, then trylast.
    assert calls == ["first", "plain-b", "plain-a", "last"]


def test_a_misspelt_hook_name_is_an_error_naming_the_plugin_and_the_hook() -> None:
    class Misspelt:
        @hookimpl
        def register_backend(self, register: Callable[[type[Any]], None]) -> None:
            register(_TwinBackend)

    manager = PluginManager()

    with pytest.raises(PluginError) as caught:
        manager.register(Misspelt(), name="typo", distribution="pkg-typo")

    message = str(caught.value)
    assert "'typo' (from pkg-typo)" in message
    assert "'register_backend'" in message
    assert "did you mean 'register_backends'?" in message
    assert "typo" not in {info.name for info in manager.plugins()}


@pytest.mark.parametrize("mark", ["wrapper", "hookwrapper"])
@pytest.mark.parametrize(
    "hook", ["register_backends", "register_storages", "image_stored"]
)
def test_a_wrapper_of_a_per_plugin_hook_is_refused_with_a_clear_error(
    mark: str, hook: str
) -> None:
    def wrapping(*args: Any, **kwargs: Any) -> Any:
        yield

    wrapping.__name__ = hook
    plugin = type("Wrapping", (), {hook: hookimpl(**{mark: True})(wrapping)})()
    manager = PluginManager()

    with pytest.raises(PluginError) as caught:
        manager.register(plugin, name="wrapping")

    message = str(caught.value)
    assert f"'wrapping' implements '{hook}' with wrapper=True" in message
    assert "plain @hookimpl" in message
    assert "wrapping" not in {info.name for info in manager.plugins()}
