"""The ``mcp-imagegen`` command, run as a child process with a clean environment."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mcp_imagegen import (
    ComponentSettings,
    GeneratedImage,
    GenerationRequest,
    InferenceBackend,
    ProgressReporter,
    cli,
    hookimpl,
)
from mcp_imagegen import plugins as plugins_module
from tests.conftest import MCP_IMAGEGEN_BIN, image_size

EXIT_CONFIG = 2


def run(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MCP_IMAGEGEN_BIN), *args],
        env={**env, **(extra_env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


@pytest.fixture
def work(tmp_path: Path, subprocess_env: dict[str, str]) -> Path:
    return tmp_path / "work"


# -- generate -------------------------------------------------------------------------


def test_generate_prints_the_path_of_an_existing_image_of_the_requested_size(
    subprocess_env: dict[str, str], work: Path, tmp_path: Path
) -> None:
    result = run(
        "generate", "a lighthouse", "--width", "256", "--height", "128",
        env=subprocess_env, cwd=work,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    path = Path(line)
    assert path.is_absolute()
    # <directory>/<day>/<hour>/<id>.png
    assert path.parents[2] == tmp_path / "data" / "mcp-imagegen" / "images"
    assert image_size(path.read_bytes()) == (256, 128)


def test_generate_reports_progress_on_stderr_only(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run(
        "generate", "a boat", "--width", "64", "--height", "64", "--steps", "3",
        env=subprocess_env, cwd=work,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "generating: 1/3" in result.stderr
    assert "generating: 3/3" in result.stderr
    assert "generating" not in result.stdout


def test_generate_json_prints_one_record_per_image(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run(
        "generate", "two boats", "-n", "2", "--seed", "9", "--width", "64",
        "--height", "64", "--output-format", "jpeg", "--json",
        env=subprocess_env, cwd=work,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["seed"] for r in records] == [9, 10]
    for record in records:
        assert record["mime_type"] == "image/jpeg"
        assert record["prompt"] == "two boats"
        assert Path(record["location"]).is_file()
        assert record["url"] == Path(record["location"]).as_uri()


def test_generate_with_a_bad_request_fails_with_the_reason_and_exit_code_1(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run("generate", "a cat", "--width", "0", env=subprocess_env, cwd=work)

    assert result.returncode == 1
    assert "width 0 is out of range" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


# -- plugins and config ----------------------------------------------------------------


def test_plugins_lists_the_built_ins_and_the_example_plugin(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run("plugins", "--json", env=subprocess_env, cwd=work)

    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["placeholder"]["distribution"] == "mcp-imagegen"
    assert plugins["placeholder"]["components"] == {"backend": ["placeholder"]}
    assert plugins["file"]["components"] == {"storage": ["file"]}
    assert plugins["border"]["distribution"] == "mcp-imagegen-border"
    assert plugins["border"]["hooks"] == ["register_postprocessors"]


def test_plugins_text_output_names_distribution_and_components(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run(
        "plugins", env=subprocess_env, cwd=work,
        extra_env={"MCP_IMAGEGEN_DISABLE_PLUGINS": "border"},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "placeholder  (mcp-imagegen 0.1.0)" in result.stdout
    assert "backends: placeholder" in result.stdout
    assert "disabled: border" in result.stdout
    assert "border  (" not in result.stdout


def test_config_prints_the_effective_configuration_from_file_and_env(
    subprocess_env: dict[str, str], work: Path
) -> None:
    (work / "mcp-imagegen.toml").write_text(
        '[server]\nname = "from-file"\n[generation]\nwidth = 768\n'
    )

    result = run(
        "config", env=subprocess_env, cwd=work,
        extra_env={"MCP_IMAGEGEN_GENERATION__WIDTH": "640"},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["server"]["name"] == "from-file"
    assert config["generation"]["width"] == 640
    assert config["storage"]["backend"] == "file"


def test_config_redacts_secrets_of_the_configured_storage(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run(
        "config", env=subprocess_env, cwd=work,
        extra_env={
            "MCP_IMAGEGEN_STORAGE__BACKEND": "s3",
            "MCP_IMAGEGEN_STORAGE__S3__BUCKET": "shown-bucket",
            "MCP_IMAGEGEN_STORAGE__S3__ENDPOINT_URL": "http://127.0.0.1:9",
            "MCP_IMAGEGEN_STORAGE__S3__ACCESS_KEY_ID": "id-do-not-print",
            "MCP_IMAGEGEN_STORAGE__S3__SECRET_ACCESS_KEY": "key-do-not-print",
        },
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "do-not-print" not in result.stdout + result.stderr
    s3 = json.loads(result.stdout)["storage"]["s3"]
    assert s3["bucket"] == "shown-bucket"
    assert s3["access_key_id"] == s3["secret_access_key"] == "**********"


class SecretiveBackend(InferenceBackend):
    """A backend type with a token, provided by a fake installed distribution."""

    name = "secretive"

    class Settings(ComponentSettings):
        url: str = "http://127.0.0.1:9"
        token: SecretStr | None = None

    async def generate(
        self, request: GenerationRequest, progress: ProgressReporter
    ) -> list[GeneratedImage]:
        raise NotImplementedError


@hookimpl
def register_backends(register: Callable[[type[Any]], None]) -> None:
    register(SecretiveBackend)


@pytest.fixture
def secretive_plugin_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Add an entry point for this module, as if a plugin package were installed."""
    extra = metadata.EntryPoint(name="secretive", value=__name__, group="mcp_imagegen")
    real_entry_points = metadata.entry_points

    def entry_points(**selection: Any) -> Any:
        found = list(real_entry_points(**selection))
        return [*found, extra] if selection.get("group") == "mcp_imagegen" else found

    monkeypatch.setattr(plugins_module.metadata, "entry_points", entry_points)


@pytest.mark.usefixtures(
    "isolated_env", "secretive_plugin_installed", "restore_logging"
)
def test_config_redacts_a_backend_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_BACKENDS__X__TYPE", "secretive")
    monkeypatch.setenv("MCP_IMAGEGEN_BACKENDS__X__TOKEN", "tok-do-not-print")

    code = cli.main(["config"])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert "tok-do-not-print" not in out + err
    backend = json.loads(out)["backends"]["x"]
    assert backend == {
        "type": "secretive",
        "url": "http://127.0.0.1:9",
        "token": "**********",
    }


def test_cli_flag_beats_environment_and_file(
    subprocess_env: dict[str, str], work: Path
) -> None:
    (work / "mcp-imagegen.toml").write_text(
        '[generation]\nbackend = "file"\nwidth = 768\n'
        '[backends.file]\ntype = "placeholder"\n'
        '[backends.env]\ntype = "placeholder"\n'
        '[backends.flag]\ntype = "placeholder"\n'
    )

    result = run(
        "--backend", "flag", "config", env=subprocess_env, cwd=work,
        extra_env={"MCP_IMAGEGEN_GENERATION__BACKEND": "env"},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    generation = json.loads(result.stdout)["generation"]
    assert generation["backend"] == "flag"
    assert generation["width"] == 768


# -- bad configuration -------------------------------------------------------------

BAD_CONFIGS = {
    "malformed-toml": ("[server\nname = 1\n", {}, "invalid TOML"),
    "unknown-key": ("[sevrer]\nname = 1\n", {}, "sevrer: unknown setting"),
    "unknown-component-key": (
        "[backends.placeholder]\nbogus = 1\n",
        {},
        "backends.placeholder.bogus: unknown setting",
    ),
    "unknown-backend-type": (
        '[backends.sdxl]\ntype = "kserv"\n',
        {},
        "unknown backend type 'kserv'",
    ),
    "env-wrong-type": (
        "",
        {"MCP_IMAGEGEN_SERVER__PREVIEW_MAX_SIDE": "huge"},
        "environment variable MCP_IMAGEGEN_SERVER__PREVIEW_MAX_SIDE",
    ),
}


@pytest.mark.parametrize("command", ["serve", "generate", "config"])
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_configuration_exits_2_with_one_message_naming_the_problem(
    case: str, command: str, subprocess_env: dict[str, str], work: Path
) -> None:
    toml, extra_env, message = BAD_CONFIGS[case]
    config = work / "bad.toml"
    config.write_text(toml)
    args = ["generate", "a cat"] if command == "generate" else [command]

    result = run("--config", str(config), *args, env=subprocess_env, cwd=work,
                 extra_env=extra_env)  # fmt: skip

    assert result.returncode == EXIT_CONFIG, result.stderr
    assert message in result.stderr
    if not extra_env:
        assert str(config) in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_missing_config_file_exits_2_naming_it(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run("--config", "missing.toml", "config", env=subprocess_env, cwd=work)

    assert result.returncode == EXIT_CONFIG
    assert "missing.toml" in result.stderr


def test_serve_with_an_unwritable_image_directory_fails_with_a_clear_message(
    subprocess_env: dict[str, str], work: Path
) -> None:
    blocker = work / "a-file"
    blocker.write_text("")
    target = blocker / "images"

    result = run(
        "serve", env=subprocess_env, cwd=work,
        extra_env={"MCP_IMAGEGEN_STORAGE__FILE__DIRECTORY": str(target)},
    )  # fmt: skip

    assert result.returncode != 0
    assert f"Image directory {target} is not writable" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_no_command_prints_help_and_exits_2(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run(env=subprocess_env, cwd=work)

    assert result.returncode == EXIT_CONFIG
    assert "serve" in result.stderr
    assert "generate" in result.stderr
