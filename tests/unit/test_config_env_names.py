"""Misspelt MCP_IMAGEGEN_* environment variables are errors, not silently ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_imagegen._config import load_settings
from mcp_imagegen.errors import ConfigurationError


def test_single_underscore_between_levels_is_refused_with_a_suggestion(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_SERVER_PREVIEW_MAX_SIDE", "768")

    with pytest.raises(ConfigurationError) as caught:
        load_settings()

    assert "MCP_IMAGEGEN_SERVER_PREVIEW_MAX_SIDE" in str(caught.value)
    assert "MCP_IMAGEGEN_SERVER__PREVIEW_MAX_SIDE" in str(caught.value)


def test_config_and_disable_plugins_variables_are_accepted(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = isolated_env / "c.toml"
    config.write_text("[server]\npreview_max_side = 300\n")
    monkeypatch.setenv("MCP_IMAGEGEN_CONFIG", str(config))
    monkeypatch.setenv("MCP_IMAGEGEN_DISABLE_PLUGINS", "s3")
    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__NAME", "studio")

    settings = load_settings()

    assert (settings.server.preview_max_side, settings.server.name) == (300, "studio")


def test_relative_xdg_config_home_is_ignored(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = isolated_env / "work"
    (work / "rel" / "mcp-imagegen").mkdir(parents=True)
    (work / "rel" / "mcp-imagegen" / "config.toml").write_text("[server]\nname = 'x'\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", "rel")

    settings = load_settings()

    assert settings.config_file is None
    assert settings.server.name == "mcp-imagegen"
