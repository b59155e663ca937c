"""Configuration fuzz: random TOML, random bytes and random environment values.

``load_settings`` (and building the service from what it returns, as ``mcp-imagegen
config`` does) must either succeed or raise ``ConfigurationError`` with one
message; never another exception. A few cases go through the real CLI: exit 0 or
2, and on 2 exactly one line on stderr.
"""

from __future__ import annotations

import collections
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings

from mcp_imagegen._app import build_service
from mcp_imagegen._config import load_settings
from mcp_imagegen._plugins import PluginManager
from mcp_imagegen.errors import ConfigurationError, PluginError
from tests.conftest import MCP_IMAGEGEN_BIN
from tests.soak.conftest import FUZZ_EXAMPLES
from tests.soak.fuzzing import ENVIRONMENTS, config_files


def load(path: Path | None, plugins: PluginManager) -> str | None:
    """Load and build; return what went wrong, or None if all is as promised."""
    try:
        build_service(load_settings(path), plugins)
    except (ConfigurationError, PluginError) as exc:
        message = str(exc)
        if not message.strip() or "Traceback" in message:
            return f"unclear ConfigurationError: {message!r}"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


def kinds(problems: list[str]) -> str:
    """Count problems by exception type, for the failure message."""
    counted = collections.Counter(p.split(" -> ")[-1].split(":")[0] for p in problems)
    return f"{dict(counted)}\n"


def test_random_config_files_load_or_raise_configuration_error(
    isolated_env: Path, plugin_manager: PluginManager
) -> None:
    path = isolated_env / "fuzz.toml"
    problems: list[str] = []

    @settings(settings.get_profile("soak"), max_examples=FUZZ_EXAMPLES)
    @given(data=config_files())
    def fuzz(data: bytes) -> None:
        path.write_bytes(data)
        problem = load(path, plugin_manager)
        if problem:
            problems.append(f"{data[:120]!r} -> {problem}")

    fuzz()

    assert problems == [], kinds(problems) + "\n".join(problems[:10])


def test_random_environment_values_load_or_raise_configuration_error(
    isolated_env: Path, plugin_manager: PluginManager
) -> None:
    problems: list[str] = []

    @settings(settings.get_profile("soak"), max_examples=FUZZ_EXAMPLES)
    @given(environment=ENVIRONMENTS)
    def fuzz(environment: dict[str, str]) -> None:
        os.environ.update(environment)
        try:
            problem = load(None, plugin_manager)
        finally:
            for name in environment:
                del os.environ[name]
        if problem:
            problems.append(f"{environment!r:.200} -> {problem}")

    fuzz()

    assert problems == [], kinds(problems) + "\n".join(problems[:10])


CLI_CASES = [
    pytest.param(b'[server]\nname = "caf\xe9"\n', {}, id="latin-1-file"),
    pytest.param(b"\xff\xfe\x00[\x00", {}, id="binary-file"),
    pytest.param(b"[server\nname = 1\n", {}, id="broken-toml"),
    pytest.param(b'[storage]\nmax_agee = "7d"\n', {}, id="unknown-key"),
    pytest.param(
        b"",
        {"MCP_IMAGEGEN_GENERATION__POSTPROCESS": "resize,metadata"},
        id="env-list-not-json",
    ),
    pytest.param(b"", {"MCP_IMAGEGEN_LIMITS__MAX_SIDE": "1e999"}, id="env-number"),
]


@pytest.mark.parametrize(("data", "environment"), CLI_CASES)
def test_the_config_command_exits_0_or_2_with_one_line(
    subprocess_env: dict[str, str],
    tmp_path: Path,
    data: bytes,
    environment: dict[str, str],
) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_bytes(data)

    done = subprocess.run(
        [str(MCP_IMAGEGEN_BIN), "--config", str(path), "config"],
        env={**subprocess_env, **environment},
        cwd=tmp_path / "work",
        capture_output=True,
        timeout=60,
    )

    stderr = done.stderr.decode(errors="replace")
    assert done.returncode in (0, 2), stderr
    if done.returncode == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, stderr
        assert lines[0].startswith("mcp-imagegen"), stderr
