"""Every configuration problem is one line naming the key, its value and its source.

Issue 8, items 4 (undecodable files and env values), 12 (unknown keys under
``[storage]``) and 13 (errors blaming the wrong key or source).
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from mcp_imagegen._app import build_service
from mcp_imagegen._config import load_settings, settings_from_dict
from mcp_imagegen.errors import ConfigurationError
from tests.conftest import MCP_IMAGEGEN_BIN

EXIT_CONFIG = 2


def run_config(
    env: dict[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``mcp-imagegen [args] config`` as a child process."""
    return subprocess.run(
        [str(MCP_IMAGEGEN_BIN), *args, "config"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def assert_one_line_config_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mcp-imagegen: configuration error: ")
    return lines[0]


# -- item 4: a file that is not UTF-8 -----------------------------------------------


def test_non_utf8_file_is_an_error_naming_the_file_and_the_encoding(
    isolated_env: Path,
) -> None:
    path = isolated_env / "latin1.toml"
    path.write_bytes('[server]\nname = "café"\n'.encode("latin-1"))

    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)

    message = str(caught.value)
    assert str(path) in message
    assert "UTF-8" in message
    assert "line 2" in message


def test_non_utf8_file_exits_2_with_one_line_through_the_cli(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[server]\nname = "café"\n'.encode("latin-1"))

    line = assert_one_line_config_error(
        run_config(subprocess_env, tmp_path / "work", "--config", str(path))
    )

    assert str(path) in line and "UTF-8" in line


# -- item 4: lists in environment variables -------------------------------------------


def test_comma_separated_list_in_an_env_var_is_accepted(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_GENERATION__POSTPROCESS", "resize, metadata")
    monkeypatch.setenv("MCP_IMAGEGEN_PLUGINS__DISABLED", "s3")

    settings = load_settings()

    assert settings.generation.postprocess == ["resize", "metadata"]
    assert settings.plugins.disabled == ["s3"]


def test_json_list_and_empty_value_in_an_env_var_are_accepted(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_GENERATION__POSTPROCESS", '["a,b", "c"]')
    monkeypatch.setenv("MCP_IMAGEGEN_PLUGINS__DISABLED", "")

    settings = load_settings()

    assert settings.generation.postprocess == ["a,b", "c"]
    assert settings.plugins.disabled == []


def test_broken_json_list_in_an_env_var_names_the_variable_and_both_forms(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_GENERATION__POSTPROCESS", '["resize", ')

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    message = str(caught.value)
    assert "generation.postprocess" in message
    assert "MCP_IMAGEGEN_GENERATION__POSTPROCESS" in message
    assert '["a", "b"]' in message and "a,b" in message


def test_non_json_section_in_an_env_var_exits_2_naming_the_variable(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**subprocess_env, "MCP_IMAGEGEN_SERVER": "name=studio"}

    line = assert_one_line_config_error(run_config(env, tmp_path / "work"))

    assert "MCP_IMAGEGEN_SERVER" in line and "JSON" in line


def test_comma_separated_postprocess_env_var_works_through_the_cli(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**subprocess_env, "MCP_IMAGEGEN_GENERATION__POSTPROCESS": "metadata"}

    result = run_config(env, tmp_path / "work")

    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["generation"]["postprocess"] == ["metadata"]


# -- item 12: unknown keys under [storage] --------------------------------------------


def test_misspelt_storage_key_in_the_file_is_an_error_with_a_suggestion(
    isolated_env: Path,
) -> None:
    path = isolated_env / "c.toml"
    path.write_text('[storage]\nmax_agee = "7d"\n')

    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)

    message = str(caught.value)
    assert "storage.max_agee" in message
    assert "storage.max_age" in message.replace("storage.max_agee", "")
    assert str(path) in message


def test_misspelt_storage_env_var_is_an_error_naming_the_variable(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__CLEANUP_INTERVALL", "60")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    message = str(caught.value)
    assert "storage.cleanup_intervall" in message
    assert "storage.cleanup_interval " in message or "storage.cleanup_interval?" in (
        message
    )
    assert "MCP_IMAGEGEN_STORAGE__CLEANUP_INTERVALL" in message


def test_misspelt_storage_key_exits_2_through_the_cli(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[storage]\nmax_agee = "7d"\n')

    line = assert_one_line_config_error(
        run_config(subprocess_env, tmp_path / "work", "-c", str(path))
    )

    assert "storage.max_agee" in line and str(path) in line


def test_misspelt_storage_key_in_settings_from_dict_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match=r"storage\.max_agee"):
        settings_from_dict({"storage": {"max_agee": 60}})


def test_storage_table_of_an_unknown_type_is_an_error(isolated_env: Path) -> None:
    path = isolated_env / "c.toml"
    path.write_text('[storage.s4]\nbucket = "images"\n')
    settings = load_settings(path)

    with pytest.raises(ConfigurationError) as caught:
        build_service(settings)

    message = str(caught.value)
    assert "storage.s4" in message and "s3" in message and str(path) in message


def test_storage_table_of_a_registered_but_unselected_type_is_accepted(
    isolated_env: Path,
) -> None:
    path = isolated_env / "c.toml"
    path.write_text('[storage]\nbackend = "file"\n[storage.s3]\nbucket = "later"\n')

    service = build_service(load_settings(path))

    assert service.storage.name == "file"


# -- item 13: the right key and the right source --------------------------------------


def test_unknown_default_backend_from_env_names_generation_backend_and_the_var(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = isolated_env / "c.toml"
    path.write_text('[backends.sdxl]\ntype = "kserve"\nurl = "http://x"\nmodel = "m"\n')
    monkeypatch.setenv("MCP_IMAGEGEN_GENERATION__BACKEND", "foo")

    with pytest.raises(ConfigurationError) as caught:
        build_service(load_settings(path))

    message = str(caught.value)
    assert message.startswith("generation.backend")
    assert "'foo'" in message
    assert "MCP_IMAGEGEN_GENERATION__BACKEND" in message
    assert "sdxl" in message and "placeholder" in message and "kserve" in message
    assert "backends.foo" not in message and "built-in defaults" not in message


def test_setting_not_in_the_file_is_not_blamed_on_the_file(
    isolated_env: Path,
) -> None:
    path = isolated_env / "c.toml"
    path.write_text('[server]\nname = "studio"\n')
    settings = load_settings(path)

    assert settings.source_of("server.name") == str(path)
    assert settings.source_of("storage.backend") == "the built-in defaults"


def test_unknown_default_storage_type_not_in_the_file_blames_the_defaults_or_env(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = isolated_env / "c.toml"
    path.write_text('[server]\nname = "studio"\n')
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__BACKEND", "s4")

    with pytest.raises(ConfigurationError) as caught:
        build_service(load_settings(path))

    message = str(caught.value)
    assert "MCP_IMAGEGEN_STORAGE__BACKEND" in message
    assert str(path) not in message


def test_cli_flag_is_named_as_the_source(isolated_env: Path) -> None:
    settings = load_settings(overrides={"generation": {"backend": "nope"}})

    with pytest.raises(ConfigurationError) as caught:
        build_service(settings)

    assert "command line" in str(caught.value)


def test_table_level_error_from_one_env_var_names_the_table_and_the_var(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = isolated_env / "c.toml"
    path.write_text('[storage]\nbackend = "s3"\n[storage.s3]\nbucket = "images"\n')
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__S3__ACCESS_KEY_ID", "AKIAEXAMPLE")

    with pytest.raises(ConfigurationError) as caught:
        build_service(load_settings(path))

    message = str(caught.value)
    assert "storage.s3.:" not in message
    assert "storage.s3: " in message
    assert "MCP_IMAGEGEN_STORAGE__S3__ACCESS_KEY_ID" in message
    assert str(path) in message
    assert "AKIAEXAMPLE" not in message


def test_missing_required_setting_says_where_to_set_it(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_STORAGE__BACKEND", "s3")

    with pytest.raises(ConfigurationError) as caught:
        build_service(load_settings())

    message = str(caught.value)
    assert "storage.s3.bucket: Field required" in message
    assert "built-in defaults" not in message
    assert "MCP_IMAGEGEN_STORAGE__S3__BUCKET" in message
