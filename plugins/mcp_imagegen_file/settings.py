"""Settings of the file storage: the ``[storage.file]`` table."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from platformdirs.api import PlatformDirsABC
from pydantic import Field, field_validator

from mcp_imagegen import ComponentSettings


def default_directory(platform: type[PlatformDirsABC] | None = None) -> Path:
    """The per-user image directory, from ``platformdirs``.

    ``$XDG_DATA_HOME/mcp-imagegen/images`` (else ``~/.local/share/...``) on Linux,
    ``~/Library/Application Support/mcp-imagegen/images`` on macOS,
    ``%LOCALAPPDATA%\\mcp-imagegen\\images`` on Windows. A relative
    ``XDG_DATA_HOME`` is ignored, as the XDG spec asks: it would make the
    directory depend on where the server was started.

    Args:
        platform: A platformdirs class to apply another system's rules; the
            running system's by default.
    """
    dirs = (platform or platformdirs.PlatformDirs)("mcp-imagegen", appauthor=False)
    return Path(dirs.user_data_dir) / "images"


class FileStorageSettings(ComponentSettings):
    """``[storage.file]``."""

    #: Where images are kept; ``~`` is expanded, relative paths are refused.
    directory: Path = Field(default_factory=default_directory)
    #: If set, ``url_for`` returns ``<base_url>/<id>.<ext>`` (e.g. served by nginx)
    #: instead of a ``file://`` URI.
    base_url: str | None = None
    #: Largest image ``load`` will read, in bytes.
    max_load_bytes: int = 64 * 1024 * 1024

    @field_validator("directory", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        value = value.expanduser()
        if not value.is_absolute():
            raise ValueError(
                f"must be an absolute path (got '{value}'); relative paths would "
                "depend on the directory the server was started from"
            )
        return value

    @field_validator("base_url", mode="after")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value
