"""Configuration: sources and their precedence, file lookup, errors, redaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from mcp_imagegen import ConfigurationError
from mcp_imagegen._app import build_service
from mcp_imagegen._config import (
    Settings,
    find_config_file,
    load_settings,
    redacted_dump,
    settings_from_dict,
)
from mcp_imagegen._plugins import PluginManager

pytestmark = pytest.mark.usefixtures("isolated_env")


def write_toml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def work_dir(isolated_env: Path) -> Path:
    return isolated_env / "work"


# -- precedence ----------------------------------------------------------------


def test_no_file_anywhere_gives_the_embedded_defaults() -> None:
    settings = load_settings()

    assert settings.config_file is None
    assert settings.generation.backend == "placeholder"
    assert settings.storage.backend == "file"
    assert settings.server.preview_max_side == 512
    assert settings.limits.max_prompt_length == 1000


def test_toml_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", "[server]\npreview_max_side = 300\n")

    settings = load_settings(path)

    assert settings.server.preview_max_side == 300
    assert settings.server.max_concurrent_generations == 2
    assert settings.config_file == path


def test_environment_overrides_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(
        tmp_path / "c.toml", '[server]\npreview_max_side = 300\nname = "from-toml"\n'
    )
    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__PREVIEW_MAX_SIDE", "400")

    settings = load_settings(path)

    assert settings.server.preview_max_side == 400
    assert settings.server.name == "from-toml"


def test_cli_overrides_beat_environment_and_toml_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(
        tmp_path / "c.toml",
        '[server]\npreview_max_side = 300\n[generation]\nbackend = "toml"\n'
        "[backends.toml]\n[backends.env]\n[backends.cli]\n",
    )
    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__PREVIEW_MAX_SIDE", "400")
    monkeypatch.setenv("MCP_IMAGEGEN_GENERATION__BACKEND", "env")

    settings = load_settings(
        path, {"server": {"preview_max_side": 500}, "generation": {"backend": "cli"}}
    )

    assert settings.server.preview_max_side == 500
    assert settings.generation.backend == "cli"


def test_environment_adds_keys_to_a_component_table_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_toml(
        tmp_path / "c.toml", '[backends.demo]\ntype = "placeholder"\ndelay_ms = 5\n'
    )
    monkeypatch.setenv("MCP_IMAGEGEN_BACKENDS__DEMO__DEFAULT_STEPS", "3")

    settings = load_settings(path)

    assert settings.backends["demo"] == {
        "type": "placeholder",
        "delay_ms": 5,
        "default_steps": "3",
    }


def test_durations_accept_iso_8601_and_seconds(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path / "c.toml", '[storage]\nmax_age = "P7D"\ncleanup_interval = 90\n'
    )

    settings = load_settings(path)

    assert settings.storage.max_age == timedelta(days=7)
    assert settings.storage.cleanup_interval == timedelta(seconds=90)


# -- file lookup -----------------------------------------------------------------


def test_explicit_config_path_beats_env_var_and_working_directory(
    isolated_env: Path, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = write_toml(isolated_env / "explicit.toml", "")
    monkeypatch.setenv(
        "MCP_IMAGEGEN_CONFIG", str(write_toml(isolated_env / "e.toml", ""))
    )
    write_toml(work_dir / "mcp-imagegen.toml", "")

    assert find_config_file(explicit) == explicit


def test_config_env_var_beats_working_directory_file(
    isolated_env: Path, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = write_toml(isolated_env / "e.toml", "")
    monkeypatch.setenv("MCP_IMAGEGEN_CONFIG", str(from_env))
    write_toml(work_dir / "mcp-imagegen.toml", "")

    assert find_config_file() == from_env


def test_working_directory_file_beats_xdg_config_home(
    isolated_env: Path, work_dir: Path
) -> None:
    local = write_toml(work_dir / "mcp-imagegen.toml", "")
    write_toml(isolated_env / "config" / "mcp-imagegen" / "config.toml", "")

    assert find_config_file() == local


def test_xdg_config_home_file_is_used_when_nothing_else_exists(
    isolated_env: Path,
) -> None:
    user = write_toml(isolated_env / "config" / "mcp-imagegen" / "config.toml", "")

    assert find_config_file() == user


def test_home_config_dir_is_used_when_xdg_config_home_is_unset(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    user = write_toml(
        isolated_env / "home" / ".config" / "mcp-imagegen" / "config.toml", ""
    )

    assert find_config_file() == user


def test_settings_are_read_from_the_found_file(work_dir: Path) -> None:
    write_toml(work_dir / "mcp-imagegen.toml", '[server]\nname = "local"\n')

    settings = load_settings()

    assert settings.server.name == "local"
    assert settings.config_file == work_dir / "mcp-imagegen.toml"


@pytest.mark.parametrize("origin", ["--config", "MCP_IMAGEGEN_CONFIG"])
def test_missing_named_config_file_is_an_error_naming_it(
    origin: str, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = isolated_env / "nope.toml"
    if origin == "MCP_IMAGEGEN_CONFIG":
        monkeypatch.setenv("MCP_IMAGEGEN_CONFIG", str(missing))
        explicit = None
    else:
        explicit = missing

    with pytest.raises(ConfigurationError) as caught:
        load_settings(explicit)

    assert str(missing) in str(caught.value)
    assert origin in str(caught.value)


# -- errors ----------------------------------------------------------------------


def test_malformed_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "broken.toml", "[server\nname = 1\n")

    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)

    assert str(path) in str(caught.value)
    assert "invalid TOML" in str(caught.value)


def test_unknown_top_level_key_is_an_error_naming_key_and_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "c.toml", "[sever]\nname = 1\n")

    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)

    assert "sever: unknown setting" in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_key_in_a_core_table_is_an_error_naming_the_dotted_key(
    tmp_path: Path,
) -> None:
    path = write_toml(tmp_path / "c.toml", '[server]\nnmae = "x"\n')

    with pytest.raises(ConfigurationError, match=r"server\.nmae: unknown setting"):
        load_settings(path)


def test_value_of_wrong_type_in_the_file_names_key_value_and_file(
    tmp_path: Path,
) -> None:
    path = write_toml(tmp_path / "c.toml", '[server]\npreview_max_side = "big"\n')

    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)

    message = str(caught.value)
    assert "server.preview_max_side" in message
    assert "'big'" in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[backends.placeholder]\nbogus = 1\n", "backends.placeholder.bogus"),
        ('[storage.file]\ndirectroy = "/tmp"\n', "storage.file.directroy"),
        (
            '[postprocess.frame]\ntype = "border"\nwidht = 3\n',
            "postprocess.frame.widht",
        ),
    ],
)
def test_unknown_key_in_a_component_table_is_an_error_naming_key_and_file(
    table: str, key: str, tmp_path: Path, plugin_manager: PluginManager
) -> None:
    path = write_toml(tmp_path / "c.toml", table)
    settings = load_settings(path)

    with pytest.raises(ConfigurationError) as caught:
        build_service(settings, plugin_manager)

    assert f"{key}: unknown setting" in str(caught.value)
    assert str(path) in str(caught.value)


def test_env_var_of_wrong_type_is_an_error_naming_the_env_var(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__MAX_CONCURRENT_GENERATIONS", "many")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    message = str(caught.value)
    assert "environment variable MCP_IMAGEGEN_SERVER__MAX_CONCURRENT_GENERATIONS" in (
        message
    )
    assert "'many'" in message


def test_misspelt_env_var_inside_a_table_is_an_error_naming_the_env_var(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__NMAE", "x")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert "server.nmae: unknown setting" in str(caught.value)
    assert "environment variable MCP_IMAGEGEN_SERVER__NMAE" in str(caught.value)


def test_component_setting_of_wrong_type_from_env_names_the_env_var(
    monkeypatch: pytest.MonkeyPatch, plugin_manager: PluginManager
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_BACKENDS__PLACEHOLDER__DELAY_MS", "slow")
    settings = load_settings()

    with pytest.raises(ConfigurationError) as caught:
        build_service(settings, plugin_manager)

    message = str(caught.value)
    assert "backends.placeholder.delay_ms" in message
    assert (
        "environment variable MCP_IMAGEGEN_BACKENDS__PLACEHOLDER__DELAY_MS" in message
    )


def test_unknown_backend_type_is_an_error_listing_the_available_types(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    settings = make_settings({"backends": {"sdxl": {"type": "kserv"}}})

    with pytest.raises(ConfigurationError) as caught:
        build_service(settings, plugin_manager)

    message = str(caught.value)
    assert "backends.sdxl.type: unknown backend type 'kserv'" in message
    assert "placeholder" in message


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[backends.sdxl]\ntype = "kserv"\n', "backends.sdxl.type"),
        ('[storage]\nbackend = "ftp"\n', "storage.backend"),
        ('[postprocess.frame]\ntype = "bordr"\n', "postprocess.frame.type"),
        ('[generation]\npostprocess = ["bordr"]\n', "generation.postprocess"),
    ],
)
def test_unknown_component_in_the_file_is_an_error_naming_key_and_file(
    toml: str, key: str, tmp_path: Path, plugin_manager: PluginManager
) -> None:
    path = write_toml(tmp_path / "c.toml", toml)
    settings = load_settings(path)

    with pytest.raises(ConfigurationError) as caught:
        build_service(settings, plugin_manager)

    assert f"{key}: unknown" in str(caught.value)
    assert f"[{path}]" in str(caught.value)


def test_unknown_backend_type_from_env_names_the_env_var(
    monkeypatch: pytest.MonkeyPatch, plugin_manager: PluginManager
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_BACKENDS__SDXL__TYPE", "kserv")

    with pytest.raises(ConfigurationError) as caught:
        build_service(load_settings(), plugin_manager)

    assert "[environment variable MCP_IMAGEGEN_BACKENDS__SDXL__TYPE]" in str(
        caught.value
    )


def test_unknown_storage_type_is_an_error_naming_storage_backend(
    make_settings: Callable[..., Settings], plugin_manager: PluginManager
) -> None:
    settings = make_settings({"storage": {"backend": "ftp"}})

    with pytest.raises(ConfigurationError, match=r"storage\.backend: unknown storage"):
        build_service(settings, plugin_manager)


def test_secret_values_never_appear_in_error_messages(
    monkeypatch: pytest.MonkeyPatch, plugin_manager: PluginManager
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_BACKENDS__PLACEHOLDER__TOKEN", "s3cr3t-value")
    settings = load_settings()

    with pytest.raises(ConfigurationError) as caught:
        build_service(settings, plugin_manager)

    assert "backends.placeholder.token" in str(caught.value)
    assert "s3cr3t-value" not in str(caught.value)


def test_settings_from_dict_ignores_environment_and_files(
    work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(work_dir / "mcp-imagegen.toml", '[server]\nname = "file"\n')
    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__NAME", "env")

    settings = settings_from_dict({"server": {"preview_max_side": 256}})

    assert settings.server.name == "mcp-imagegen"
    assert settings.server.preview_max_side == 256


def test_settings_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigurationError, match=r"limits\.max_sides"):
        settings_from_dict({"limits": {"max_sides": 1}})


# -- redaction -------------------------------------------------------------------


def test_redacted_dump_masks_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_BACKENDS__X__TOKEN", "tok-123")
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__S3__SECRET_ACCESS_KEY", "key-456")
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__S3__BUCKET", "images")

    dump = redacted_dump(load_settings())

    assert dump["backends"]["x"]["token"] == "**********"
    assert dump["storage"]["s3"]["secret_access_key"] == "**********"
    assert dump["storage"]["s3"]["bucket"] == "images"
    assert "tok-123" not in repr(dump)
    assert "key-456" not in repr(dump)
