"""Default directories come from platformdirs: XDG on Linux, macOS and Windows rules.

Issue 8, item 25. This machine runs Linux, so the Windows and macOS rules are
checked through platformdirs' own per-OS classes, and Windows paths are read with
``PureWindowsPath`` as Windows itself would print them.
"""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import pytest
from platformdirs.macos import MacOS
from platformdirs.unix import Unix
from platformdirs.windows import Windows

from mcp_imagegen._config import default_config_file, find_config_file
from mcp_imagegen_file.storage import default_directory

LOCAL_APPDATA = r"C:\Users\Ann\AppData\Local"


@pytest.fixture
def windows_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    # platformdirs' documented override of a Windows known folder.
    monkeypatch.setenv("WIN_PD_OVERRIDE_LOCAL_APPDATA", LOCAL_APPDATA)


@pytest.mark.usefixtures("windows_profile")
def test_windows_config_file_is_under_local_appdata() -> None:
    path = PureWindowsPath(str(default_config_file(Windows)))

    assert str(path) == LOCAL_APPDATA + r"\mcp-imagegen\config.toml"
    assert path.is_absolute()


@pytest.mark.usefixtures("windows_profile")
def test_windows_image_directory_is_under_local_appdata() -> None:
    path = PureWindowsPath(str(default_directory(Windows)))

    assert str(path) == LOCAL_APPDATA + r"\mcp-imagegen\images"


def test_macos_uses_application_support_without_xdg_variables(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.delenv("XDG_DATA_HOME")
    support = isolated_env / "home" / "Library" / "Application Support"

    assert default_config_file(MacOS) == support / "mcp-imagegen" / "config.toml"
    assert default_directory(MacOS) == support / "mcp-imagegen" / "images"


def test_linux_follows_xdg_and_falls_back_to_dot_config(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_config_file(Unix) == (
        isolated_env / "config" / "mcp-imagegen" / "config.toml"
    )
    assert default_directory(Unix) == isolated_env / "data" / "mcp-imagegen" / "images"

    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.delenv("XDG_DATA_HOME")

    home = isolated_env / "home"
    assert default_config_file(Unix) == home / ".config/mcp-imagegen/config.toml"
    assert default_directory(Unix) == home / ".local/share/mcp-imagegen/images"


def test_find_config_file_reads_the_platform_file_last(isolated_env: Path) -> None:
    user = default_config_file()
    user.parent.mkdir(parents=True)
    user.write_text("[server]\nname = 'from-user-dir'\n")

    assert find_config_file() == user

    local = isolated_env / "work" / "mcp-imagegen.toml"
    local.write_text("")
    assert find_config_file() == local
