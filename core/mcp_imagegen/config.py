"""Configuration: defaults < TOML file < environment < CLI flags.

The file is found by :func:`find_config_file`. Environment variables start with
``MCP_IMAGEGEN_`` and use ``__`` between levels
(``MCP_IMAGEGEN_SERVER__PREVIEW_MAX_SIDE=768``). Component tables
(``[backends.<name>]``, ``[storage.<type>]``, ``[postprocess.<name>]``) are kept
as plain tables here and validated by each component's own ``Settings`` model when
the service is built (:func:`validate_component_table`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mcp_imagegen.errors import ConfigurationError
from mcp_imagegen.interfaces import ComponentSettings
from mcp_imagegen.models import GenerationRequest

ENV_PREFIX = "MCP_IMAGEGEN_"
# Credentials in URLs (https://user:pass@host) must never be echoed in errors.
_USERINFO = re.compile(r"://[^/@\s'\"]+@")
CONFIG_ENV_VAR = "MCP_IMAGEGEN_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    """``[server]``: the MCP server itself."""

    name: str = "mcp-imagegen"
    #: Longest side of the inline preview returned by generate_image.
    preview_max_side: int = Field(512, ge=32, le=2048)
    #: Most image data one tool result may carry inline, counted in base64 across
    #: all its images; past it, a full image falls back to its preview, and a
    #: preview that does not fit is left out (the link and path stay).
    max_inline_bytes: int = Field(1_000_000, ge=0)
    #: Generations running at the same time (across all backends).
    max_concurrent_generations: int = Field(2, ge=1, le=256)
    #: Requests allowed to wait for a slot; more are refused at once as busy.
    max_queued_generations: int = Field(16, ge=0, le=10_000)
    #: Longest a request waits for a slot before it is refused as busy.
    queue_timeout: timedelta = timedelta(seconds=60)


class LimitsSettings(_Section):
    """``[limits]``: what a request may ask for (backends may allow less)."""

    max_prompt_length: int = Field(1000, ge=1)
    min_side: int = Field(64, ge=8)
    max_side: int = Field(2048, ge=8)
    side_multiple: int = Field(8, ge=1)
    max_pixels: int = Field(2048 * 2048, ge=64)
    max_images: int = Field(4, ge=1)
    max_steps: int = Field(150, ge=1)


class GenerationSettings(_Section):
    """``[generation]``: defaults for generate_image."""

    #: Backend instance used when a request names none.
    backend: str = "placeholder"
    width: int = 512
    height: int = 512
    num_images: int = 1
    steps: int | None = None
    guidance_scale: float | None = None
    #: Re-encode every image to this format ("png", "jpeg", "webp"); unset keeps
    #: what the backend (or the post-processing chain) produced.
    output_format: Literal["png", "jpeg", "webp"] | None = None
    #: Post-processing steps applied to every image, by step name. The default
    #: embeds the generation recipe (the built-in imageops plugin's ``metadata``).
    postprocess: list[str] = Field(default_factory=lambda: ["metadata"])

    def request(self, prompt: str, **given: Any) -> GenerationRequest:
        """Build a request, taking every argument given as ``None`` from here."""
        defaults = {
            "width": self.width,
            "height": self.height,
            "num_images": self.num_images,
            "steps": self.steps,
            "guidance_scale": self.guidance_scale,
        }
        values = {k: v for k, v in given.items() if v is not None}
        return GenerationRequest(prompt=prompt, **{**defaults, **values})


class StorageSettings(BaseModel):
    """``[storage]``: which storage to use and how long to keep images.

    The storage type's own settings live in ``[storage.<type>]``.
    """

    model_config = ConfigDict(extra="allow")

    backend: str = "file"
    #: Delete images older than this; unset keeps images forever.
    max_age: timedelta | None = None
    #: How often the retention task looks for expired images and leftovers.
    cleanup_interval: timedelta = timedelta(hours=1)
    #: Leftovers of interrupted saves (temporary files, images without a record)
    #: older than this are removed by the retention task.
    orphan_grace: timedelta = timedelta(hours=1)

    def table(self, type_name: str) -> dict[str, Any]:
        """Return the ``[storage.<type_name>]`` table (empty if absent)."""
        extra = self.model_extra or {}
        value = extra.get(type_name, {})
        if not isinstance(value, dict):
            raise ConfigurationError(
                f"storage.{type_name}: expected a table, got {type(value).__name__}."
            )
        return value


class LoggingSettings(_Section):
    """``[logging]``: structured logs, always on stderr."""

    level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    #: "auto": human-readable on a terminal, JSON lines otherwise.
    format: Literal["auto", "console", "json"] = "auto"
    #: Include prompt text in log events (off: prompts are user data).
    log_prompts: bool = False


class PluginsSettings(_Section):
    """``[plugins]``: which plugins not to load, and how long listeners may run."""

    disabled: list[str] = Field(default_factory=list)
    #: Longest an ``image_stored`` listener may run before it is cancelled. Listeners
    #: run in the background, after the reply; this only bounds stray work.
    image_stored_timeout: timedelta = Field(timedelta(seconds=30), gt=timedelta(0))


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)
    postprocess: dict[str, dict[str, Any]] = Field(default_factory=dict)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    plugins: PluginsSettings = Field(default_factory=PluginsSettings)

    _config_file: Path | None = PrivateAttr(default=None)

    @property
    def config_file(self) -> Path | None:
        """The TOML file this configuration was read from, if any."""
        return self._config_file

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if settings_cls.model_config.get("toml_file"):
            sources += (TomlConfigSettingsSource(settings_cls),)
        return sources

    def backend_instances(self) -> dict[str, dict[str, Any]]:
        """Return every backend instance's table, adding the default instance.

        The default backend (``generation.backend``) needs no table of its own when
        it is named after its type, as the embedded ``placeholder`` is.
        """
        instances = dict(self.backends)
        instances.setdefault(self.generation.backend, {})
        return instances

    def source_of(self, key: str) -> str:
        """Say where ``key`` (dotted) was set: an env var, the file, or defaults."""
        env_name = ENV_PREFIX + key.replace(".", "__").upper()
        if any(name.upper() == env_name for name in os.environ):
            return f"environment variable {env_name}"
        if self._config_file is not None:
            return str(self._config_file)
        return "the built-in defaults"


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the configuration file to read, or ``None`` for embedded defaults.

    Order: ``explicit`` (``--config``), ``$MCP_IMAGEGEN_CONFIG``,
    ``./mcp-imagegen.toml``, ``$XDG_CONFIG_HOME/mcp-imagegen/config.toml``.

    Raises:
        ConfigurationError: if an explicitly named file does not exist.
    """
    named = explicit or os.environ.get(CONFIG_ENV_VAR)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            origin = "--config" if explicit else CONFIG_ENV_VAR
            raise ConfigurationError(f"Configuration file {path} ({origin}) not found.")
        return path.absolute()
    local = Path("mcp-imagegen.toml")
    if local.is_file():
        return local.absolute()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or "").expanduser()
    if not config_home.is_absolute():  # the XDG spec says to ignore relative paths
        config_home = Path.home() / ".config"
    user = config_home / "mcp-imagegen" / "config.toml"
    return user if user.is_file() else None


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    search: bool = True,
) -> Settings:
    """Read the configuration.

    Args:
        config_file: The ``--config`` path, if given.
        overrides: Nested values from CLI flags; they beat every other source.
        search: Look for a file when ``config_file`` is not given.

    Raises:
        ConfigurationError: with one message naming the key, the problem and the
            file or environment variable it came from.
    """
    _check_env_names()
    path = find_config_file(config_file) if (config_file or search) else None
    cls: type[Settings] = Settings
    if path is not None:
        cls = type(
            "Settings",
            (Settings,),
            {"model_config": {**Settings.model_config, "toml_file": path}},
        )
    try:
        settings = cls(**dict(overrides or {}))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}.") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}.") from None
    except pydantic.ValidationError as exc:
        probe = Settings.model_construct()
        probe._config_file = path
        raise ConfigurationError(
            format_validation_error(exc, probe.source_of)
        ) from None
    settings._config_file = path
    return settings


def _check_env_names() -> None:
    """Refuse ``MCP_IMAGEGEN_*`` variables that would be silently ignored.

    pydantic-settings ignores variables naming no top-level section, so a typo such
    as ``MCP_IMAGEGEN_SERVER_PREVIEW_MAX_SIDE`` (one underscore) would do nothing.
    """
    known = set(Settings.model_fields) | {"config", "disable_plugins"}
    for name in os.environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        if rest.split("__", 1)[0] in known:
            continue
        hint = ""
        for section in Settings.model_fields:
            if rest.startswith(section + "_"):
                suggestion = ENV_PREFIX + f"{section}__{rest[len(section) + 1 :]}"
                hint = f" Did you mean {suggestion.upper()}? Use '__' between levels."
        raise ConfigurationError(
            f"Unknown environment variable {name}: it names no setting.{hint}"
        )


def settings_from_dict(data: Mapping[str, Any]) -> Settings:
    """Build settings from a mapping shaped like the TOML file, ignoring env and files.

    Meant for tests and for embedding mcp-imagegen in another program.
    """

    class _Isolated(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    try:
        return _Isolated(**dict(data))
    except pydantic.ValidationError as exc:
        raise ConfigurationError(
            format_validation_error(exc, lambda key: "the given settings")
        ) from None


def format_validation_error(
    exc: pydantic.ValidationError, source_of: Any, prefix: str = ""
) -> str:
    """Render a pydantic error as lines ``key: problem (got value) [source]``."""
    lines = []
    for error in exc.errors(include_url=False):
        key = prefix + ".".join(str(part) for part in error["loc"])
        problem = error["msg"]
        if error["type"] == "extra_forbidden":
            problem = "unknown setting (check the spelling; see config.example.toml)"
        value = error.get("input")
        shown = ""
        if error["type"] != "missing" and isinstance(value, str | int | float | bool):
            if not is_secret_key(key) and "key" not in key:
                shown = f" (got {_USERINFO.sub('://', repr(value))})"
        lines.append(f"{key}: {problem}{shown} [{source_of(key)}]")
    return "Invalid configuration: " + "; ".join(lines)


def validate_component_table(
    settings: Settings,
    settings_model: type[ComponentSettings],
    table: Mapping[str, Any],
    key: str,
) -> ComponentSettings:
    """Validate one component table with the component's own ``Settings`` model.

    Args:
        key: The table's dotted key (``backends.sdxl``), for error messages.

    Raises:
        ConfigurationError: naming ``key.<field>``, the problem and the source.
    """
    try:
        return settings_model.model_validate(dict(table))
    except pydantic.ValidationError as exc:
        raise ConfigurationError(
            format_validation_error(exc, settings.source_of, prefix=key + ".")
        ) from None


def redacted_dump(settings: Settings) -> dict[str, Any]:
    """Return the configuration as JSON-able data with every secret masked."""
    return redact(settings.model_dump(mode="json"))


_SECRET_WORDS = (
    "token",
    "secret",
    "password",
    "authorization",
    "access_key",
    "api_key",
    "credential",
)
REDACTED = "**********"


def is_secret_key(key: str) -> bool:
    """True when a setting or log field named ``key`` holds a secret."""
    return any(word in key.lower() for word in _SECRET_WORDS)


def redact(data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` with the value of every secret-looking key masked."""
    redacted: dict[str, Any] = _redact(data)
    return redacted


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if value and is_secret_key(key):
        return REDACTED
    return value
