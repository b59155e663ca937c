"""The ``mcp-imagegen`` command: serve, generate, plugins, config."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import anyio

from mcp_imagegen import __version__
from mcp_imagegen._config import (
    ENV_PREFIX,
    Settings,
    load_settings,
)
from mcp_imagegen._logs import configure_logging
from mcp_imagegen._redaction import REDACTED, is_secret_key
from mcp_imagegen.errors import ConfigurationError, MCPImageError, PluginError
from mcp_imagegen.interfaces import Component

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after the command name.

    The sub-commands get a copy whose defaults are ``SUPPRESS``: an option given
    only before the command is then not overwritten by the sub-parser's default.
    """
    options = argparse.ArgumentParser(add_help=False)
    default: Any = argparse.SUPPRESS if suppress else None
    options.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=default,
        help="TOML configuration file to read.",
    )
    options.add_argument(
        "--backend",
        metavar="NAME",
        default=default,
        help="Default backend instance (generation.backend).",
    )
    options.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        default=default,
        help="Log level (logging.level).",
    )
    options.add_argument(
        "--log-format",
        choices=["auto", "console", "json"],
        default=default,
        help="logging.format.",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (exposed for the docs and tests).

    Global options (``--config``, ``--backend``, ``--log-level``, ``--log-format``)
    are accepted before and after the sub-command.
    """
    parser = argparse.ArgumentParser(
        prog="mcp-imagegen",
        description="MCP server that turns text prompts into images.",
        parents=[_global_options(suppress=False)],
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    common = [_global_options(suppress=True)]
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="Run the MCP server (stdio, or streamable HTTP).",
        parents=common,
    )
    serve.add_argument(
        "--transport",
        choices=["stdio", "http"],
        default="stdio",
        help="stdio (default: a local client starts the server) or http "
        "(streamable HTTP, see docs/http.md).",
    )
    serve.add_argument("--host", help="HTTP: interface to bind (server.http.host).")
    serve.add_argument(
        "--port", type=int, help="HTTP: port to listen on (server.http.port)."
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="HTTP: serve without authentication on a non-loopback host.",
    )

    _add_generate(
        commands.add_parser(
            "generate",
            help="Generate images once and print where they are.",
            parents=common,
        )
    )

    plugins = commands.add_parser(
        "plugins", help="List loaded plugins.", parents=common
    )
    plugins.add_argument("--json", action="store_true", help="Print JSON.")

    config = commands.add_parser(
        "config",
        help="Check the configuration and print it as TOML (secrets hidden).",
        parents=common,
    )
    config.add_argument(
        "--example",
        action="store_true",
        help="Print the example configuration (every setting, commented).",
    )
    return parser


def _add_generate(gen: argparse.ArgumentParser) -> None:
    """The ``generate`` sub-command's own options."""
    gen.add_argument("prompt", help="What the image should show.")
    gen.add_argument("--negative-prompt", help="What the image should not show.")
    gen.add_argument("--width", type=int, help="Width in pixels.")
    gen.add_argument("--height", type=int, help="Height in pixels.")
    gen.add_argument("-n", "--num-images", type=int, help="How many images.")
    gen.add_argument("--seed", type=int, help="Seed (random if omitted).")
    gen.add_argument("--steps", type=int, help="Inference steps.")
    gen.add_argument("--guidance-scale", type=float, help="Guidance scale.")
    gen.add_argument("--output-format", choices=["png", "jpeg", "webp"])
    gen.add_argument(
        "--postprocess",
        metavar="STEPS",
        help="Comma-separated post-processing steps (replaces the default chain; "
        "'' for none).",
    )
    gen.add_argument(
        "--style",
        metavar="NAME",
        help="A style (see docs/styles.md): wraps the prompt in its template and "
        "fills the options not given.",
    )
    gen.add_argument("--json", action="store_true", help="Print records as JSON.")


def progress_text(done: float, total: float | None = None) -> str:
    """Format a progress report for people: ``3/4``, ``42%`` or ``7``.

    Backends report whole steps (``3`` of ``4``) or fractions of 1 (diffusers-style
    callbacks); ``{:g}`` printed the latter as ``8.42e-06/1``.
    """
    if total:
        if float(done).is_integer() and float(total).is_integer():
            return f"{int(done)}/{int(total)}"
        return f"{done / total:.0%}"
    if float(done).is_integer():
        return str(int(done))
    if 0 <= done <= 1:
        return f"{done:.0%}"
    return f"{done:.1f}"


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.backend:
        overrides["generation"] = {"backend": args.backend}
    logging_overrides = {}
    if args.log_level:
        logging_overrides["level"] = args.log_level
    elif args.command == "generate":
        # One-shot use: keep stderr for progress unless asked for more.
        logging_overrides["level"] = "warning"
    if args.log_format:
        logging_overrides["format"] = args.log_format
    if logging_overrides:
        overrides["logging"] = logging_overrides
    if args.command == "serve":
        http = {
            k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None
        }
        if http:
            overrides["server"] = {"http": http}
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    if args.command == "config" and args.example:
        sys.stdout.write(example_config())
        return EXIT_OK
    try:
        settings = load_settings(args.config, _overrides(args))
        configure_logging(settings.logging)
        if args.command == "config":
            return _config(settings)
        if args.command == "plugins":
            return _plugins(settings, as_json=args.json)
        if args.command == "serve" and args.transport == "http":
            return _serve_http(settings, args.allow_unauthenticated)
        if args.command == "serve":
            return _serve(settings)
        return anyio.run(_generate, settings, args)
    except (ConfigurationError, PluginError) as exc:
        print(f"mcp-imagegen: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except MCPImageError as exc:
        print(f"mcp-imagegen: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def stdio_hint(stdin: TextIO) -> str | None:
    """The line ``serve`` prints when a person, not an MCP client, started it.

    Only when stdin is a terminal: under a client stdin is a pipe, and the hint
    would only clutter the client's log.
    """
    if not stdin.isatty():
        return None
    return (
        "mcp-imagegen: this server speaks MCP on stdin/stdout and waits for a "
        "client; try it with `npx -y @modelcontextprotocol/inspector "
        "mcp-imagegen serve` or configure `mcp-imagegen serve` as a stdio "
        "server in your MCP client. Ctrl-C stops it."
    )


def _serve(settings: Settings) -> int:
    from mcp_imagegen._app import create_server, serve_stdio
    from mcp_imagegen._memory import limit_arenas_for_serving

    # Before any worker thread exists: threads take their arenas at first malloc.
    limit_arenas_for_serving()
    server = create_server(settings)
    hint = stdio_hint(sys.stdin)
    if hint:
        print(hint, file=sys.stderr)
    try:
        return anyio.run(serve_stdio, server)
    except BaseExceptionGroup as group:
        _raise_ours(group)
        raise


def _raise_ours(group: BaseExceptionGroup[BaseException]) -> None:
    """Re-raise the first of our own errors inside ``group``, if there is one.

    The SDK enters the lifespan inside its task groups, so a component that
    fails to start (an unwritable image directory, an unreachable bucket)
    arrives wrapped; re-raise our own error for main() to report in one line.
    """
    ours = group.subgroup(lambda exc: isinstance(exc, MCPImageError))
    if ours is None:
        return
    first: BaseException = ours
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    raise first from None


def _serve_http(settings: Settings, allow_unauthenticated: bool) -> int:
    from mcp_imagegen._app import create_server
    from mcp_imagegen._http import exposure_problem, loop_options, serve_http
    from mcp_imagegen._memory import limit_arenas_for_serving

    # Before building anything: nothing is bound or started when refused.
    problem = exposure_problem(settings, allow_unauthenticated=allow_unauthenticated)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_CONFIG
    loop = loop_options(settings.server.http.loop)
    limit_arenas_for_serving()
    server = create_server(settings, http=True)
    try:
        return anyio.run(serve_http, server, settings.server.http, backend_options=loop)
    except BaseExceptionGroup as group:
        _raise_ours(group)
        raise


def example_config() -> str:
    """The shipped ``config.example.toml``: every setting, with its default.

    A wheel carries it inside the package; a source checkout (editable install)
    has it at the repository root.
    """
    shipped = resources.files("mcp_imagegen").joinpath("config.example.toml")
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8")
    checkout = Path(__file__).resolve().parents[2] / "config.example.toml"
    return checkout.read_text(encoding="utf-8")


def _config(settings: Settings) -> int:
    from mcp_imagegen._app import build_service, effective_configuration

    # Building the service validates every component table, so an invalid table
    # is reported here exactly as at start-up; check() then looks at fonts and
    # directories without starting (connecting, creating) anything.
    service = build_service(settings)
    components: list[Component] = [
        *service.backends.values(),
        service.storage,
        *service.steps.values(),
    ]
    for component in components:
        anyio.run(component.check)
    sys.stdout.write(render_config(effective_configuration(service), settings))
    return EXIT_OK


def render_config(data: Mapping[str, Any], settings: Settings) -> str:
    """Render the effective configuration as TOML that loads back.

    The header names the file and the ``MCP_IMAGEGEN_*`` variables it came from.
    Unset values and masked secrets become comments: TOML has no null, and a
    masked value read back would silently replace the real secret.
    """
    import tomlkit  # only this command writes TOML; keep other commands' start fast

    document = tomlkit.document()
    document.add(tomlkit.comment("mcp-imagegen effective configuration"))
    source = settings.config_file or "none (built-in defaults)"
    document.add(tomlkit.comment(f"file: {source}"))
    variables = sorted(n for n in os.environ if n.upper().startswith(ENV_PREFIX))
    document.add(tomlkit.comment(f"environment: {', '.join(variables) or 'none'}"))
    document.add(tomlkit.comment("secrets are masked and commented out"))
    _fill_table(document, data)
    return tomlkit.dumps(document)


def _fill_table(table: Any, data: Mapping[str, Any]) -> None:
    import tomlkit

    # Plain values first: a key after a sub-table would belong to the sub-table.
    for key, value in data.items():
        if isinstance(value, Mapping):
            continue
        if value is None:
            table.add(tomlkit.comment(f"{key}: not set"))
        elif value == REDACTED and is_secret_key(key):
            table.add(tomlkit.comment(f'{key} = "{REDACTED}"'))
        elif isinstance(value, list) and REDACTED in value and is_secret_key(key):
            # A list of secrets (server.auth.tokens): masks read back would
            # become accepted tokens.
            masks = ", ".join(f'"{REDACTED}"' for _ in value)
            table.add(tomlkit.comment(f"{key} = [{masks}]"))
        else:
            table.add(key, value)
    for key, value in data.items():
        if isinstance(value, Mapping):
            sub = tomlkit.table(
                is_super_table=all(isinstance(v, Mapping) for v in value.values())
                and bool(value)
            )
            _fill_table(sub, value)
            table.add(key, sub)


def _plugins(settings: Settings, *, as_json: bool) -> int:
    from mcp_imagegen._plugins import load_plugins

    manager = load_plugins(settings.plugins.disabled)
    infos = manager.plugins()
    if as_json:
        payload = {
            "plugins": [info.__dict__ for info in infos],
            "failed": [failure.__dict__ for failure in manager.failures],
            "disabled": sorted(manager.disabled),
        }
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    for info in infos:
        origin = f"{info.distribution} {info.version}" if info.distribution else "local"
        print(f"{info.name}  ({origin})")
        print(f"  hooks: {', '.join(info.hooks)}")
        for kind, names in info.components.items():
            print(f"  {kind}s: {', '.join(names)}")
    for failure in manager.failures:
        print(f"{failure.name}  FAILED TO LOAD: {failure.error}")
    if manager.disabled:
        print(f"disabled: {', '.join(sorted(manager.disabled))}")
    return EXIT_OK


async def _generate(settings: Settings, args: argparse.Namespace) -> int:
    from mcp_imagegen._app import build_service

    postprocess = None
    if args.postprocess is not None:
        postprocess = [s.strip() for s in args.postprocess.split(",") if s.strip()]
    tty = sys.stderr.isatty()

    async def progress(
        done: float, total: float | None = None, message: str | None = None
    ) -> None:
        line = f"generating: {progress_text(done, total)} {message or ''}".rstrip()
        print(
            ("\r" + line + "\033[K") if tty else line,
            end="" if tty else "\n",
            file=sys.stderr,
        )

    service = build_service(settings)
    async with service:
        # The same resolution of styles as generate_image's.
        styled = service.apply_style(
            args.style,
            prompt=args.prompt,
            negative_prompt=args.negative_prompt,
            width=args.width,
            height=args.height,
            steps=args.steps,
            guidance_scale=args.guidance_scale,
            postprocess=postprocess,
        )
        request = settings.generation.request(
            styled.prompt,
            negative_prompt=styled.negative_prompt,
            width=styled.width,
            height=styled.height,
            num_images=args.num_images,
            seed=args.seed,
            steps=styled.steps,
            guidance_scale=styled.guidance_scale,
            style=styled.style,
        )
        stored = await service.generate(
            request,
            progress,
            backend=styled.backend,
            postprocess=styled.postprocess,
            output_format=args.output_format,
        )
        if tty:
            print(file=sys.stderr)
        for record in (image.record for image in stored):
            path = service.storage.local_path(record.id)
            location = str(path) if path else await service.url_for(record.id)
            if args.json:
                data = record.model_dump(mode="json")
                data.update(location=location, url=await service.url_for(record.id))
                print(json.dumps(data))
            else:
                print(location)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
