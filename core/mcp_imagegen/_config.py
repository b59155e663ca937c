"""Configuration: defaults < TOML file < environment < CLI flags.

The file is found by :func:`find_config_file`. Environment variables start with
``MCP_IMAGEGEN_`` and use ``__`` between levels
(``MCP_IMAGEGEN_SERVER__PREVIEW_MAX_SIDE=768``). Component tables
(``[backends.<name>]``, ``[storage.<type>]``, ``[postprocess.<name>]``) are kept
as plain tables here and validated by each component's own ``Settings`` model when
the service is built (:func:`validate_component_table`).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import platformdirs
import pydantic
from platformdirs.api import PlatformDirsABC
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from mcp_imagegen._redaction import is_secret_key, redact, redact_url_text
from mcp_imagegen.errors import ConfigurationError
from mcp_imagegen.interfaces import ComponentSettings
from mcp_imagegen.models import GenerationRequest, Style

ENV_PREFIX = "MCP_IMAGEGEN_"
CONFIG_ENV_VAR = "MCP_IMAGEGEN_CONFIG"
APP_NAME = "mcp-imagegen"
DEFAULTS_SOURCE = "the built-in defaults"
CLI_SOURCE = "the command line"


def _comma_list(value: Any) -> Any:
    """Accept a list setting as a JSON list or as comma-separated text.

    Environment variables hold text, and ``resize,metadata`` is what people type;
    ``["a", "b"]`` stays available for names that hold a comma.
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"not a valid JSON list ({exc.msg}); write a list as "
                '["a", "b"] or as comma-separated names: a,b'
            ) from None
    return [item.strip() for item in text.split(",") if item.strip()]


#: A list of names: a TOML/JSON list, or comma-separated text (``a,b``). NoDecode
#: keeps pydantic-settings from requiring JSON in environment variables.
NameList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_public_url(value: str | None) -> str | None:
    """Accept an absolute ``http(s)://host[:port][/path]`` URL without credentials.

    The URL is shown to clients (image links), so credentials in it would leak;
    the error never repeats the value's userinfo (:func:`redact_url_text`).
    """
    if value is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "must be an absolute http:// or https:// URL with a host, e.g. "
            "https://images.example.com"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            "must not hold credentials (user:password@): it is shown to clients"
        )
    if parts.query or parts.fragment:
        raise ValueError("must not have a query (?...) or fragment (#...)")
    return value.rstrip("/")


def _check_cors_origin(value: str) -> str:
    """Accept a web origin, ``http(s)://host[:port]``, or ``http(s)://host:*``.

    Kept in lower case, as browsers send it. ``*`` is refused: a listed origin
    also passes the DNS-rebinding Origin check, which takes no wildcard, and
    every page on the web is not a client an image server should invite.
    """
    from urllib.parse import urlsplit

    text = value.strip().lower()
    if text == "*":
        raise ValueError(
            '"*" is not accepted: list each web origin that may call the server, '
            "e.g. https://app.example.com"
        )
    parts = urlsplit(text.removesuffix(":*"))
    try:
        port_ok = parts.port is None or parts.port > 0  # ValueError: not a port
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ValueError(
            "not a web origin: write scheme://host[:port] (http or https), or "
            "scheme://host:* for any port"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError("an origin has no credentials (user:password@)")
    if parts.path or parts.query or parts.fragment:
        raise ValueError(
            "an origin has no path, query or fragment, not even a trailing /: "
            "scheme://host[:port]"
        )
    return text


#: Web origins (see :func:`_check_cors_origin`), as a list or comma-separated.
OriginList = Annotated[
    list[Annotated[str, pydantic.AfterValidator(_check_cors_origin)]],
    NoDecode,
    BeforeValidator(_comma_list),
]


class HttpSettings(_Section):
    """``[server.http]``: ``serve --transport http`` (streamable HTTP)."""

    #: Interface to bind. Anything but loopback needs [server.auth] or
    #: ``--allow-unauthenticated``.
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(8000, ge=1, le=65535)
    #: Path of the MCP endpoint.
    path: str = Field("/mcp", pattern=r"^/[^\s?#]*$")
    #: No sessions: every request stands alone, so any replica can answer it.
    stateless: bool = True
    #: The externally visible base URL (https://images.example.com).
    public_url: Annotated[str | None, pydantic.AfterValidator(_check_public_url)] = None
    #: Host headers accepted on the MCP endpoint (DNS-rebinding protection), in
    #: addition to the loopback names (when bound to loopback) and public_url's
    #: host. ``name:*`` accepts any port.
    allowed_hosts: NameList = Field(default_factory=list)
    #: Origin headers accepted, in addition to the loopback origins (when bound to
    #: loopback) and public_url's origin. ``scheme://name:*`` accepts any port.
    allowed_origins: NameList = Field(default_factory=list)
    #: Web origins whose pages may call the MCP endpoint and fetch /images links
    #: from a browser (CORS), e.g. https://app.example.com; ``scheme://name:*``
    #: for any port. They pass the Origin check too. Empty: no page may.
    cors_origins: OriginList = Field(default_factory=list)
    #: Serve HTTPS directly: the certificate chain, PEM (with ``tls_keyfile``).
    #: Behind a TLS-terminating proxy or ingress, leave both unset.
    tls_certfile: Path | None = None
    #: The certificate's private key, PEM, not encrypted (a mounted secret).
    tls_keyfile: Path | None = None
    #: With ``stateless = false``: a session without a request for this long is
    #: closed (its id then gets 404, and the client starts a new session).
    session_idle_timeout: timedelta = Field(timedelta(minutes=30), gt=timedelta(0))
    #: With ``stateless = false``: the most sessions open at once; a request
    #: opening one more gets 503 while the open ones go on.
    max_sessions: int = Field(10_000, ge=1)
    #: How long SIGTERM waits for in-flight calls before cancelling them.
    drain_timeout: timedelta = Field(timedelta(seconds=30), ge=timedelta(0))
    #: Largest request body accepted (413 beyond).
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    #: The event loop: "uvloop" (faster; a dependency, but not on Windows),
    #: "asyncio" (the standard library's), or "auto": uvloop where installed,
    #: as uvicorn's own default.
    loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    #: Signs the /images/{id} links of tool results (HMAC-SHA256); set it through
    #: MCP_IMAGEGEN_SERVER__HTTP__URL_SECRET. Unset: a fresh one per process, so
    #: links die with the process and one replica cannot serve another's links;
    #: replicas must share it.
    url_secret: SecretStr | None = Field(None, min_length=32)
    #: How long a signed /images/{id} link stays valid. Links are capabilities
    #: (whoever holds one sees the image, no token needed) and end up in chat
    #: transcripts and browser histories; a day lets a user come back to a
    #: conversation, then the leaked link is dead.
    url_ttl: timedelta = Field(timedelta(hours=24), gt=timedelta(0))

    @model_validator(mode="after")
    def _check_tls_pair(self) -> HttpSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError(
                "server.http.tls_certfile and server.http.tls_keyfile go together: "
                "set both to serve HTTPS, or neither"
            )
        return self


#: The scopes the MCP tools and resources ask for (see ``_http.auth.TOOL_SCOPES``).
IMAGE_SCOPES = ("images:generate", "images:read", "images:delete")


class ServerAuthSettings(_Section):
    """``[server.auth]``: who may call the server over HTTP (stdio needs none)."""

    #: "none", "bearer" (static tokens) or "jwt" (tokens from an OAuth server).
    mode: Literal["none", "bearer", "jwt"] = "none"
    #: bearer: accepted tokens; set them through MCP_IMAGEGEN_SERVER__AUTH__TOKENS
    #: (comma-separated), never in a file others can read.
    tokens: Annotated[list[SecretStr], NoDecode, BeforeValidator(_comma_list)] = Field(
        default_factory=list
    )
    #: bearer: a file of sha256 hex digests of accepted tokens, one per line.
    tokens_file: Path | None = None
    #: bearer: the scopes every static token carries.
    bearer_scopes: NameList = Field(default_factory=lambda: list(IMAGE_SCOPES))
    #: jwt: the expected ``iss`` claim (the authorization server's URL).
    issuer: str | None = None
    #: jwt: the expected ``aud`` claim; unset means the server's own MCP URL.
    audience: str | None = None
    #: jwt: where the authorization server publishes its signing keys.
    jwks_url: str | None = None
    #: Scopes every request needs, on top of each tool's own (static bearer
    #: tokens carry ``bearer_scopes``).
    required_scopes: NameList = Field(default_factory=list)
    #: jwt: signature algorithms accepted.
    algorithms: NameList = Field(default_factory=lambda: ["RS256", "ES256"])
    #: jwt: clock skew tolerated on ``exp``/``nbf``/``iat``.
    leeway: timedelta = Field(timedelta(seconds=30), ge=timedelta(0))
    #: jwt: shortest time between two JWKS fetches caused by an unknown key id.
    jwks_refetch_cooldown: timedelta = Field(timedelta(seconds=30), ge=timedelta(0))

    @model_validator(mode="after")
    def _check_mode(self) -> ServerAuthSettings:
        unknown = [s for s in self.bearer_scopes if s not in IMAGE_SCOPES]
        if unknown:
            raise ValueError(
                f"server.auth.bearer_scopes: unknown scope {', '.join(unknown)}; "
                f"accepted: {', '.join(IMAGE_SCOPES)}"
            )
        if self.mode == "bearer" and not self.tokens and self.tokens_file is None:
            raise ValueError(
                'mode "bearer" needs accepted tokens: set '
                "MCP_IMAGEGEN_SERVER__AUTH__TOKENS or server.auth.tokens_file"
            )
        if self.mode == "jwt":
            missing = [k for k in ("issuer", "jwks_url") if not getattr(self, k)]
            if missing:
                raise ValueError(
                    'mode "jwt" needs '
                    + " and ".join(f"server.auth.{k}" for k in missing)
                )
        return self


class TaskSettings(_Section):
    """``[server.tasks]``: MCP tasks and the no-tasks fallback (docs/tasks.md)."""

    #: Where task records live: "auto" (the image storage's task store over HTTP
    #: when it has one, else memory), "memory" or "storage".
    store: Literal["auto", "memory", "storage"] = "auto"
    #: How long a task record is kept after creation; a client's requested ttl is
    #: clamped to this.
    ttl: timedelta = Field(
        timedelta(hours=1), ge=timedelta(seconds=10), le=timedelta(days=7)
    )
    #: Longest generate_image waits before answering "continues as <id>" to a
    #: client that did not ask for a task.
    sync_wait: timedelta = Field(
        timedelta(seconds=45), ge=timedelta(0), le=timedelta(minutes=10)
    )
    #: Tasks running at the same time on this server; more wait in a queue.
    max_running: int = Field(8, ge=1, le=1024)
    #: Tasks allowed to wait; more are refused at once.
    max_queued: int = Field(200, ge=0, le=100_000)
    #: Tasks one authenticated client (a token's subject or client id) may have
    #: running or queued on this server at once, long synchronous calls included;
    #: more are refused at once, so one client cannot fill the queue. 0: no limit.
    #: Clients without [server.auth] are not told apart.
    max_per_client: int = Field(0, ge=0, le=100_000)
    #: Polling interval suggested to clients (and used for other replicas' tasks).
    poll_interval: timedelta = Field(
        timedelta(seconds=1), ge=timedelta(milliseconds=100), le=timedelta(minutes=1)
    )
    #: How often a running task's record is refreshed (and cancellation checked);
    #: a working task not refreshed for 3 intervals is reported failed.
    heartbeat_interval: timedelta = Field(
        timedelta(seconds=5), ge=timedelta(milliseconds=200), le=timedelta(minutes=5)
    )


class ServerSettings(_Section):
    """``[server]``: the MCP server itself."""

    #: ``[server.auth]``: authentication of HTTP clients.
    auth: ServerAuthSettings = Field(default_factory=ServerAuthSettings)

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
    http: HttpSettings = Field(default_factory=HttpSettings)
    #: ``[server.tasks]``: MCP tasks and long generations.
    tasks: TaskSettings = Field(default_factory=TaskSettings)


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
    postprocess: NameList = Field(default_factory=lambda: ["metadata"])
    #: Offer the built-in styles (photo, watercolor, ...; see docs/styles.md).
    #: ``false`` leaves only [styles.<name>] tables and plugins' styles.
    builtin_styles: bool = True

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


class InputsSettings(_Section):
    """``[inputs]``: where edit_image and ingest_image may read images from.

    Stored images, ``image://`` URIs and ``data:`` URIs are always accepted;
    local paths and http(s) URLs only from what is listed here (none by default).
    """

    #: Largest input image in bytes (a data URI's decoded bytes, a file, a download).
    max_bytes: int = Field(20 * 1024 * 1024, ge=1024)
    #: Largest input image in pixels, checked from the header before decoding
    #: (decompression bombs cost nothing).
    max_pixels: int = Field(8192 * 8192, ge=64)
    #: Directories whose files may be read by path (stdio use); empty: no paths.
    allowed_dirs: Annotated[list[Path], NoDecode, BeforeValidator(_comma_list)] = Field(
        default_factory=list
    )
    #: Host names URLs may be fetched from (``*.example.com`` for subdomains);
    #: empty: no URLs.
    allowed_hosts: NameList = Field(default_factory=list)
    #: Longest a whole download (every redirect included) may take.
    fetch_timeout: timedelta = Field(timedelta(seconds=20), gt=timedelta(0))
    #: Redirects followed, each one checked again like the first URL.
    max_redirects: int = Field(3, ge=0, le=20)
    #: Fetch from loopback, private, link-local (cloud metadata) and reserved
    #: addresses too. Off: a URL resolving there is refused (SSRF protection).
    allow_private_addresses: bool = False
    #: Networks (CIDR, e.g. ``10.1.2.0/24``) fetched from even when private: an
    #: internal image host, without opening every private address.
    allowed_networks: Annotated[
        list[ipaddress.IPv4Network | ipaddress.IPv6Network],
        NoDecode,
        BeforeValidator(_comma_list),
    ] = Field(default_factory=list)
    #: PEM file of CA certificates trusted for https fetches in addition to
    #: the public ones: an internal image host with a private CA.
    ca_bundle: Path | None = None


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

    def table_names(self) -> list[str]:
        """Return the names of the ``[storage.<type>]`` tables present."""
        return [k for k, v in (self.model_extra or {}).items() if isinstance(v, dict)]

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

    disabled: NameList = Field(default_factory=list)
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
    inputs: InputsSettings = Field(default_factory=InputsSettings)
    #: ``[styles.<name>]``: named looks for generate_image's ``style`` argument;
    #: a table named like a built-in or plugin style overrides the keys it sets.
    styles: dict[str, Style] = Field(default_factory=dict)

    _config_file: Path | None = PrivateAttr(default=None)
    # What the file and the CLI flags set, to tell where a key came from.
    _file_data: dict[str, Any] = PrivateAttr(default_factory=dict)
    _overrides: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def config_file(self) -> Path | None:
        """The TOML file this configuration was read from, if any."""
        return self._config_file

    # False for settings_from_dict, whose settings come from its mapping alone.
    _reads_environment: ClassVar[bool] = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment, then the TOML file if any."""
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings,)
        if cls._reads_environment:
            sources += (env_settings,)
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

    def check_default_backend(self, backend_types: Collection[str]) -> None:
        """Refuse a ``generation.backend`` naming neither an instance nor a type.

        Without this check the default instance would be built from an empty
        table and reported as ``backends.<name>.type``, a key nobody wrote.

        Args:
            backend_types: The registered backend type names.

        Raises:
            ConfigurationError: naming ``generation.backend``, its value, its
                source, the configured instances and the available types.
        """
        name = self.generation.backend
        if name in self.backends or name in backend_types:
            return
        instances = ", ".join(sorted(self.backends)) or "none"
        types = ", ".join(sorted(backend_types)) or "none"
        raise ConfigurationError(
            f"generation.backend: no backend instance or type named '{name}' "
            f"(configured instances: {instances}; backend types: {types}) "
            f"[{self.source_of('generation.backend')}]."
        )

    def source_of(self, key: str) -> str:
        """Say where ``key`` (dotted) was set: CLI flags, env vars, the file, defaults.

        A key set in one place names that place; a table (``storage.s3``) filled
        from several names all of them.
        """
        parts = [part for part in key.split(".") if part]
        if _lookup(self._overrides, parts) is not _MISSING:
            return CLI_SOURCE
        env_name = ENV_PREFIX + "__".join(parts).upper()
        exact, below = [], []
        for name in os.environ:
            upper = name.upper()
            if upper == env_name or (
                upper.startswith(ENV_PREFIX) and env_name.startswith(upper + "__")
            ):
                exact.append(name)  # the key itself, or a table holding it (JSON)
            elif upper.startswith(env_name + "__"):
                below.append(name)
        if exact:
            return _env_source(exact)
        sources = [_env_source(sorted(below))] if below else []
        if (
            self._config_file is not None
            and _lookup(self._file_data, parts) is not _MISSING
        ):
            sources.append(str(self._config_file))
        return "; ".join(sources) or DEFAULTS_SOURCE


_MISSING = object()


def _lookup(data: Mapping[str, Any], parts: list[str]) -> Any:
    """Return the value at ``parts`` in nested mappings, or ``_MISSING``."""
    value: Any = data
    for part in parts:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _env_source(names: list[str]) -> str:
    if len(names) == 1:
        return f"environment variable {names[0]}"
    return f"environment variables {', '.join(names)}"


def default_config_file(platform: type[PlatformDirsABC] | None = None) -> Path:
    """The per-user configuration file, from ``platformdirs``.

    ``$XDG_CONFIG_HOME/mcp-imagegen/config.toml`` (a relative value is ignored;
    else ``~/.config/...``) on Linux, ``~/Library/Application Support/...`` on
    macOS (an absolute ``$XDG_CONFIG_HOME`` wins there too),
    ``%LOCALAPPDATA%\\mcp-imagegen\\config.toml`` on Windows.

    Args:
        platform: A platformdirs class (``platformdirs.windows.Windows``, ...) to
            apply another system's rules; the running system's by default.
    """
    dirs = (platform or platformdirs.PlatformDirs)(APP_NAME, appauthor=False)
    return Path(dirs.user_config_dir) / "config.toml"


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the configuration file to read, or ``None`` for embedded defaults.

    Order: ``explicit`` (``--config``), ``$MCP_IMAGEGEN_CONFIG``,
    ``./mcp-imagegen.toml``, then the per-user file (:func:`default_config_file`).

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
    user = default_config_file()
    return user if user.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read and parse a TOML configuration file.

    Raises:
        ConfigurationError: naming the file and the line for unreadable files,
            text that is not UTF-8 (TOML files must be) and invalid TOML.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigurationError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
            "TOML files must be UTF-8: save the file as UTF-8."
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}.") from None


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
    file_data = read_config_file(path) if path is not None else {}
    cls: type[Settings] = Settings
    if path is not None:
        cls = type(
            "Settings",
            (Settings,),
            {"model_config": {**Settings.model_config, "toml_file": path}},
        )
    probe = Settings.model_construct()
    probe._config_file = path
    probe._file_data = file_data
    probe._overrides = dict(overrides or {})
    try:
        settings = cls(**dict(overrides or {}))
    except tomllib.TOMLDecodeError as exc:  # the file changed since it was read
        raise ConfigurationError(f"{path}: invalid TOML: {exc}.") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}.") from None
    except SettingsError as exc:
        raise ConfigurationError(_env_parse_error(exc)) from None
    except pydantic.ValidationError as exc:
        raise ConfigurationError(
            format_validation_error(exc, probe.source_of)
        ) from None
    settings._config_file = path
    settings._file_data = file_data
    settings._overrides = dict(overrides or {})
    _check_storage_keys(settings, settings.source_of)
    return settings


def _env_parse_error(exc: SettingsError) -> str:
    """Name the section and the variables pydantic-settings could not parse."""
    match = re.search(r'field "([^"]+)"', str(exc))
    section = match.group(1) if match else "?"
    prefix = ENV_PREFIX + section.upper()
    names = sorted(
        n
        for n in os.environ
        if n.upper() == prefix or n.upper().startswith(prefix + "__")
    )
    shown = _env_source(names) if names else "the environment"
    return (
        f"Invalid configuration: {section}: cannot parse {shown}: a variable naming "
        "a whole table or list must hold JSON; or set one key per variable, e.g. "
        f"{prefix}__<KEY>=value [{shown}]"
    )


def _check_storage_keys(settings: Settings, source_of: Callable[[str], str]) -> None:
    """Refuse unknown ``[storage]`` keys: only ``[storage.<type>]`` tables may be extra.

    ``StorageSettings`` allows extra keys to carry the storage types' tables, so a
    misspelt ``max_agee`` would otherwise be kept as an unused extra and
    retention would quietly stay off.
    """
    for name, value in (settings.storage.model_extra or {}).items():
        if isinstance(value, dict):
            continue
        key = f"storage.{name}"
        close = difflib.get_close_matches(name, list(StorageSettings.model_fields), 1)
        hint = f"; did you mean storage.{close[0]}?" if close else ""
        raise ConfigurationError(
            f"Invalid configuration: {key}: unknown setting (a storage type's own "
            f"settings go in a [storage.<type>] table){hint} [{source_of(key)}]"
        )


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


class _IsolatedSettings(Settings):
    """Settings read from keyword arguments only: no environment, no file."""

    _reads_environment = False


def settings_from_dict(data: Mapping[str, Any]) -> Settings:
    """Build settings from a mapping shaped like the TOML file, ignoring env and files.

    Meant for tests and for embedding mcp-imagegen in another program.
    """

    def given(key: str) -> str:
        return "the given settings"

    try:
        settings = _IsolatedSettings(**dict(data))
    except pydantic.ValidationError as exc:
        raise ConfigurationError(format_validation_error(exc, given)) from None
    _check_storage_keys(settings, given)
    return settings


def format_validation_error(
    exc: pydantic.ValidationError, source_of: Callable[[str], str], prefix: str = ""
) -> str:
    """Render a pydantic error as lines ``key: problem (got value) [source]``."""
    lines = []
    for error in exc.errors(include_url=False):
        # A model-level error has an empty location: it is about the table itself.
        key = (prefix + ".".join(str(part) for part in error["loc"])).rstrip(".")
        problem = redact_url_text(error["msg"])
        if error["type"] == "extra_forbidden":
            problem = "unknown setting (check the spelling; see config.example.toml)"
        value = error.get("input")
        shown = ""
        if (
            error["type"] != "missing"
            and isinstance(value, str | int | float | bool)
            and not is_secret_key(key)
            and "key" not in key
        ):
            text = redact_url_text(value) if isinstance(value, str) else value
            shown = f" (got {text!r})"
        source = source_of(key)
        if error["type"] == "missing" and source == DEFAULTS_SOURCE:
            # A required key set nowhere: "the built-in defaults" would mislead.
            env_name = ENV_PREFIX + key.replace(".", "__").upper()
            source = f"not set: add it to the file or set {env_name}"
        lines.append(f"{key}: {problem}{shown} [{source}]")
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
