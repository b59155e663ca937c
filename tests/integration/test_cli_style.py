"""``mcp-imagegen generate --style NAME``: the styles of generate_image on the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import run, work  # noqa: F401 (the fixture)


def test_generate_with_a_style_expands_the_prompt_and_records_it(
    subprocess_env: dict[str, str],
    work: Path,  # noqa: F811
) -> None:
    result = run(
        "generate", "a lighthouse", "--style", "watercolor", "--width", "64",
        "--height", "64", "--json", env=subprocess_env, cwd=work,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["style"] == "watercolor"
    assert record["prompt"].startswith("watercolor painting of a lighthouse, ")
    assert "photograph" in record["negative_prompt"]
    assert record["guidance_scale"] == 7.0  # the style's default
    assert Path(record["location"]).is_file()


def test_an_unknown_style_fails_with_the_known_ones_and_exit_code_1(
    subprocess_env: dict[str, str],
    work: Path,  # noqa: F811
) -> None:
    result = run("generate", "a cat", "--style", "noir", env=subprocess_env, cwd=work)

    assert result.returncode == 1
    assert "Unknown style 'noir'" in result.stderr
    assert "watercolor" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
