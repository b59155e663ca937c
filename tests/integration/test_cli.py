"""The ``mcp-imagegen`` command, run as a child process with a clean environment."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
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
    __version__,
    hookimpl,
)
from mcp_imagegen import _cli as cli
from mcp_imagegen import _plugins as plugins_module
from tests.conftest import MCP_IMAGEGEN_BIN, image_size, png_bytes

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
    config = tomllib.loads(result.stdout)
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
    s3 = tomllib.loads(result.stdout)["storage"]["s3"]
    assert s3["bucket"] == "shown-bucket"
    assert "access_key_id" not in s3
    assert '# access_key_id = "**********"' in result.stdout
    assert '# secret_access_key = "**********"' in result.stdout


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


class FractionalBackend(InferenceBackend):
    """Reports progress as fractions of 1, as diffusers-style callbacks do."""

    name = "fractional"

    class Settings(ComponentSettings):
        pass

    async def generate(
        self, request: GenerationRequest, progress: ProgressReporter
    ) -> list[GeneratedImage]:
        await progress(8.42e-06, 1.0, "warming up")
        await progress(0.5, 1.0)
        await progress(0.25)
        return [
            GeneratedImage(
                data=png_bytes(size=64), mime_type="image/png", width=64, height=64
            )
        ]


@hookimpl
def register_backends(register: Callable[[type[Any]], None]) -> None:
    register(SecretiveBackend)
    register(FractionalBackend)


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
    backend = tomllib.loads(out)["backends"]["x"]
    # A masked secret is a comment: fed back, the output must not set a bogus token.
    assert backend == {"type": "secretive", "url": "http://127.0.0.1:9"}
    assert '# token = "**********"' in out


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
    generation = tomllib.loads(result.stdout)["generation"]
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


@pytest.mark.usefixtures(
    "isolated_env", "secretive_plugin_installed", "restore_logging"
)
def test_generate_shows_fractional_progress_as_percentages(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_BACKENDS__FRAC__TYPE", "fractional")

    code = cli.main(["generate", "a cat", "--backend", "frac"])

    out, err = capsys.readouterr()
    assert out.strip()
    assert code == 0, err
    assert "generating: 0% warming up" in err
    assert "generating: 50%" in err
    assert "generating: 25%" in err
    assert "e-0" not in err


@pytest.mark.parametrize(
    ("done", "total", "shown"),
    [
        (3, 4, "3/4"),
        (3.0, 4.0, "3/4"),
        (8.42e-06, 1.0, "0%"),
        (0.5, 1.0, "50%"),
        (1.5, 3.0, "50%"),
        (7, None, "7"),
        (0.25, None, "25%"),
        (2.5, None, "2.5"),
    ],
)
def test_progress_text(done: float, total: float | None, shown: str) -> None:
    assert cli.progress_text(done, total) == shown


# -- global options after the sub-command ------------------------------------------


def test_global_options_work_after_the_sub_command(
    subprocess_env: dict[str, str], work: Path
) -> None:
    config = work / "x.toml"
    config.write_text(
        '[generation]\nwidth = 768\n[backends.flag]\ntype = "placeholder"\n'
    )

    result = run(
        "config", "--config", str(config), "--backend", "flag",
        "--log-level", "error", "--log-format", "json",
        env=subprocess_env, cwd=work,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    config_out = tomllib.loads(result.stdout)
    assert config_out["generation"]["backend"] == "flag"
    assert config_out["generation"]["width"] == 768
    assert config_out["logging"]["level"] == "error"
    assert config_out["logging"]["format"] == "json"


def test_generate_accepts_backend_after_the_prompt(
    subprocess_env: dict[str, str], work: Path
) -> None:
    (work / "x.toml").write_text('[backends.other]\ntype = "placeholder"\n')

    result = run(
        "generate", "a cat", "--backend", "other", "--config", "x.toml",
        "--width", "64", "--height", "64", "--json",
        env=subprocess_env, cwd=work,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "other"


def test_serve_reads_a_config_given_after_the_sub_command(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run("serve", "--config", "missing.toml", env=subprocess_env, cwd=work)

    assert result.returncode == EXIT_CONFIG
    assert "Configuration file missing.toml (--config) not found" in result.stderr


# -- config output, the shipped example, python -m -----------------------------------

REPO = Path(__file__).resolve().parents[2]


def test_config_prints_toml_that_loads_back_to_the_same_configuration(
    subprocess_env: dict[str, str], work: Path
) -> None:
    (work / "mcp-imagegen.toml").write_text(
        '[server]\nname = "from-file"\n[generation]\nwidth = 768\n'
        "[storage]\norphan_grace = 120\n"
        '[postprocess.small]\ntype = "resize"\nmax_side = 256\n'
    )

    first = run(
        "config", env=subprocess_env, cwd=work,
        extra_env={"MCP_IMAGEGEN_GENERATION__HEIGHT": "640"},
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    (work / "effective.toml").write_text(first.stdout)
    second = run("config", "--config", "effective.toml", env=subprocess_env, cwd=work)

    assert second.returncode == 0, second.stderr
    config = tomllib.loads(first.stdout)
    assert tomllib.loads(second.stdout) == config
    assert config["server"]["name"] == "from-file"
    assert config["generation"]["height"] == 640
    assert config["storage"]["orphan_grace"] == "PT2M"
    assert config["postprocess"]["small"]["max_side"] == 256
    comments = [line for line in first.stdout.splitlines() if line.startswith("#")]
    assert any(str(work / "mcp-imagegen.toml") in line for line in comments)
    assert any("MCP_IMAGEGEN_GENERATION__HEIGHT" in line for line in comments)
    assert "# steps: not set" in first.stdout


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[postprocess.mark]\ntype = "watermark"\ntext = "x"\n'
            'font = "not-a-font.ttf"\n',
            "postprocess.mark.font: cannot load",
        ),
        (
            '[storage.file]\ndirectory = "a-file/images"\n',
            "storage.file.directory",
        ),
    ],
    ids=["font", "directory"],
)
def test_config_checks_fonts_and_directories_without_starting_anything(
    toml: str, message: str, subprocess_env: dict[str, str], work: Path
) -> None:
    (work / "not-a-font.ttf").write_text("plain text")
    (work / "a-file").write_text("")
    (work / "mcp-imagegen.toml").write_text(toml)

    result = run("config", env=subprocess_env, cwd=work)

    assert result.returncode == EXIT_CONFIG, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_config_creates_nothing(subprocess_env: dict[str, str], work: Path) -> None:
    images = work / "not-yet" / "images"
    (work / "mcp-imagegen.toml").write_text(f'[storage.file]\ndirectory = "{images}"\n')

    result = run("config", env=subprocess_env, cwd=work)

    assert result.returncode == 0, result.stderr
    assert not (work / "not-yet").exists()


def test_config_example_prints_the_shipped_example(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run("config", "--example", env=subprocess_env, cwd=work)

    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO / "config.example.toml").read_text()


def test_python_dash_m_runs_the_cli(subprocess_env: dict[str, str], work: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mcp_imagegen", "--version"],
        env=subprocess_env, cwd=work, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"mcp-imagegen {__version__}"


def test_a_wheel_ships_the_example_config_and_config_example_reads_it(
    subprocess_env: dict[str, str], tmp_path: Path, work: Path
) -> None:
    from hatchling.builders.wheel import WheelBuilder

    [wheel] = list(WheelBuilder(str(REPO)).build(directory=str(tmp_path / "dist")))
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    shipped = unpacked / "mcp_imagegen" / "config.example.toml"
    assert shipped.read_text() == (REPO / "config.example.toml").read_text()
    # The unpacked wheel comes first on the path, as an installed wheel would.
    shipped.write_text(shipped.read_text() + "# from the wheel\n")

    result = subprocess.run(
        [sys.executable, "-m", "mcp_imagegen", "config", "--example"],
        env={**subprocess_env, "PYTHONPATH": str(unpacked)},
        cwd=work, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("# from the wheel\n")


# -- install extras: s3 (aioboto3) and tensors (numpy) --------------------------------


def run_without(
    modules: list[str], code: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a child Python where importing ``modules`` fails.

    ``sys.modules[name] = None`` makes ``import name`` raise ImportError, as if the
    package (an extra) were not installed.
    """
    blocker = "".join(f"sys.modules[{name!r}] = None\n" for name in modules)
    return subprocess.run(
        [sys.executable, "-c", f"import sys\n{blocker}{code}"],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


CLI_MAIN = "from mcp_imagegen._cli import main\nsys.exit(main(sys.argv[1:]))"


def test_s3_storage_without_the_s3_extra_is_a_configuration_error_naming_it(
    subprocess_env: dict[str, str], work: Path
) -> None:
    env = {
        **subprocess_env,
        "MCP_IMAGEGEN_STORAGE__BACKEND": "s3",
        "MCP_IMAGEGEN_STORAGE__S3__BUCKET": "b",
        "MCP_IMAGEGEN_STORAGE__S3__ENDPOINT_URL": "http://127.0.0.1:9",
    }
    for command in ("config", "serve"):
        result = run_without(
            ["aioboto3", "aiobotocore", "botocore"],
            CLI_MAIN.replace("sys.argv[1:]", repr([command])),
            env,
            work,
        )

        assert result.returncode == EXIT_CONFIG, result.stderr
        assert "mcp-imagegen[s3]" in result.stderr
        assert "storage.backend" in result.stderr
        assert "Traceback" not in result.stderr


def test_the_base_install_generates_without_aioboto3_and_numpy(
    subprocess_env: dict[str, str], work: Path
) -> None:
    result = run_without(
        ["aioboto3", "aiobotocore", "botocore", "numpy"],
        CLI_MAIN.replace("sys.argv[1:]", repr(["generate", "a cat", "--width", "64",
                                               "--height", "64"])),
        subprocess_env,
        work,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_file()


def test_a_tensor_answer_without_the_tensors_extra_names_the_extra(
    subprocess_env: dict[str, str], work: Path
) -> None:
    code = """
import json
from mcp_imagegen import BadBackendResponseError
from mcp_imagegen_kserve.responses import parse_v2_response
body = json.dumps({"outputs": [{"name": "image", "datatype": "FP32",
    "shape": [1, 8, 8, 3], "data": [0.5] * 192}]}).encode()
try:
    parse_v2_response(body, where="KServe x")
except BadBackendResponseError as exc:
    print(exc)
"""
    result = run_without(["numpy"], code, subprocess_env, work)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("KServe x: ")
    assert "mcp-imagegen[tensors]" in result.stdout
