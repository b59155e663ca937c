"""Bad ``[styles.<name>]`` tables stop the server at start-up, naming table and file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import MCP_IMAGEGEN_BIN

EXIT_CONFIG = 2

BAD_STYLES = {
    "no-placeholder": (
        '[styles.poster]\nprompt = "a travel poster"\n',
        "styles.poster.prompt: Value error, the template must contain {prompt}",
    ),
    "unknown-backend": (
        '[styles.poster]\nprompt = "poster of {prompt}"\nbackend = "sdxl"\n',
        "styles.poster.backend: no backend instance named 'sdxl' "
        "(configured instances: placeholder)",
    ),
    "unknown-step": (
        '[styles.poster]\nprompt = "poster of {prompt}"\npostprocess = ["blur"]\n',
        "styles.poster.postprocess: unknown post-processing step 'blur'",
    ),
    "unknown-key": (
        '[styles.poster]\nprompt = "poster of {prompt}"\nsize = 512\n',
        "styles.poster.size: unknown setting",
    ),
    "bad-name": (
        '[styles."Poster Art"]\nprompt = "poster of {prompt}"\n',
        "styles.Poster Art: invalid style name",
    ),
    "reserved-name": (
        '[styles.prompt-guide]\nprompt = "{prompt}"\n',
        "styles.prompt-guide: invalid style name: 'prompt-guide' is reserved",
    ),
    "width-beyond-limits": (
        '[styles.poster]\nprompt = "poster of {prompt}"\nwidth = 4096\n',
        "styles.poster.width: 4096 is outside [limits]: use 64 to 2048 pixels",
    ),
    "height-not-a-multiple": (
        '[styles.poster]\nprompt = "poster of {prompt}"\nheight = 500\n',
        "styles.poster.height: 500 is outside [limits]",
    ),
    "steps-beyond-limits": (
        '[styles.poster]\nprompt = "poster of {prompt}"\nsteps = 500\n',
        "styles.poster.steps: 500 is above limits.max_steps (150)",
    ),
    "override-of-a-builtin": (
        '[styles.photo]\nbackend = "nowhere"\n',
        "styles.photo.backend: no backend instance named 'nowhere'",
    ),
}


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MCP_IMAGEGEN_BIN), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case", sorted(BAD_STYLES))
def test_a_bad_style_table_exits_2_naming_the_table_and_the_file(
    case: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    toml, message = BAD_STYLES[case]
    config = tmp_path / "work" / "styles.toml"
    config.write_text(toml)

    result = run("--config", str(config), "config", env=subprocess_env,
                 cwd=tmp_path / "work")  # fmt: skip

    assert result.returncode == EXIT_CONFIG, result.stderr
    assert message in result.stderr
    assert f"[{config}]" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_bad_style_from_the_environment_names_the_variable(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**subprocess_env, "MCP_IMAGEGEN_STYLES__PHOTO__BACKEND": "nowhere"}

    result = run("config", env=env, cwd=tmp_path / "work")

    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "styles.photo.backend: no backend instance named 'nowhere'" in (
        result.stderr
    )
    assert "MCP_IMAGEGEN_STYLES__PHOTO__BACKEND" in result.stderr


def test_good_styles_are_shown_by_config(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "work" / "styles.toml"
    config.write_text(
        "[generation]\nbuiltin_styles = false\n"
        '[styles.poster]\nprompt = "poster of {prompt}"\nwidth = 640\n'
    )

    result = run("--config", str(config), "config", env=subprocess_env,
                 cwd=tmp_path / "work")  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "[styles.poster]" in result.stdout
    assert 'prompt = "poster of {prompt}"' in result.stdout
