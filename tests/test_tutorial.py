"""docs/plugins.md's tutorial runs as written.

Every code block of the tutorial is taken from the document: the titled blocks are
written to disk, the ``text`` block must list exactly those files, and the ``sh``
blocks are run, in a fresh virtual environment, offline. The only adaptations:
``pip install`` gets ``--no-deps --no-build-isolation --no-index`` (no network; the
build backend hatchling and mcp-imagegen itself come from this test run's
environment through a ``.pth`` file, standing in for "install mcp-imagegen first"),
and ``mcp-imagegen ARGS`` runs as ``python -m mcp_imagegen ARGS`` with the fresh
environment's python.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)
TITLE = re.compile(r'title="(?P<path>[^"]+)"')


def tutorial_blocks() -> list[tuple[str, str]]:
    """Return ``(info string, body)`` of every code block of the tutorial section."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Tutorial:")
    end = text.index("\n## ", start + 1)
    return [(m["info"].strip(), m["body"]) for m in FENCE.finditer(text[start:end])]


def test_the_tutorial_has_its_files_and_commands() -> None:
    blocks = tutorial_blocks()
    titled = [TITLE.search(info) for info, _ in blocks]
    files = {m["path"] for m in titled if m}
    [layout] = [body for info, body in blocks if info == "text"]
    listed = {
        "mcp-imagegen-grayscale/" + line.strip()
        for line in layout.splitlines()[1:]
        if line.strip()
    }

    # Every block is a file to write, the layout, or commands to run.
    for (info, _), title in zip(blocks, titled, strict=True):
        assert title or info in ("text", "sh"), f"block {info!r} is not runnable"
    assert listed == {f for f in files if f.startswith("mcp-imagegen-grayscale/")}
    pyproject = next(b for i, b in blocks if "pyproject.toml" in i)
    assert "[build-system]" in pyproject
    assert 'version = "' in pyproject
    assert "@pytest.mark.anyio" in next(b for i, b in blocks if "tests/" in i)


def offline(command: list[str], python: Path) -> list[str]:
    """The tutorial's command as this offline test runs it (see the module doc)."""
    if command[:2] == ["pip", "install"]:
        return [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            *command[2:],
        ]
    if command[0] == "mcp-imagegen":
        return [str(python), "-m", "mcp_imagegen", *command[1:]]
    if command[0] == "python":
        return [str(python), *command[1:]]
    raise AssertionError(
        f"the tutorial runs a command this test does not know: {command}"
    )


def test_a_plugin_written_from_the_tutorial_installs_lists_and_serves(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    work = tmp_path / "work"
    for info, body in tutorial_blocks():
        title = TITLE.search(info)
        if title:
            target = work / title["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(body, encoding="utf-8")

    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [
                str(python),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # addsitedir (not a bare path line) so this environment's own .pth files, such
    # as the editable install of mcp-imagegen, are processed too. It comes after
    # the fresh venv's site-packages: the tutorial's package is found there.
    ours = sysconfig.get_path("purelib")
    (site_packages / "_this_checkout.pth").write_text(
        f"import site; site.addsitedir({ours!r})\n", encoding="utf-8"
    )
    env = {
        **subprocess_env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{subprocess_env['PATH']}",
    }

    outputs: dict[str, str] = {}
    for info, body in tutorial_blocks():
        if info != "sh":
            continue
        for line in body.splitlines():
            command = shlex.split(line, comments=True)
            if not command:
                continue
            done = subprocess.run(
                offline(command, python),
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            outputs[line] = done.stdout

    installed = subprocess.run(
        [str(python), "-m", "pip", "show", "-f", "mcp-imagegen-grayscale"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Location: " + str(site_packages) in installed
    listing = outputs["mcp-imagegen plugins"]
    assert "grayscale  (mcp-imagegen-grayscale 0.1.0)" in listing
    assert "postprocessors: grayscale" in listing
    tested = outputs["python -m pytest mcp-imagegen-grayscale/tests"]
    summary = tested.strip().splitlines()[-1]
    passed = re.search(r"\b(\d+) passed\b", summary)
    # The contract's tests and the tutorial's MCP test, nothing else in the summary.
    assert passed and int(passed[1]) >= 5, tested
    assert re.fullmatch(r"=+ \d+ passed in [\d.]+s( \(.*\))? =+", summary), tested
    config = outputs["mcp-imagegen --config mcp-imagegen.toml config"]
    assert 'type = "grayscale"' in config


@pytest.fixture
def subprocess_env(subprocess_env: dict[str, str]) -> dict[str, str]:
    """The shared clean environment (no ``MCP_IMAGEGEN_*``), without cache files."""
    return {**subprocess_env, "PYTHONDONTWRITEBYTECODE": "1"}
