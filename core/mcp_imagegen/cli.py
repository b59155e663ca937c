"""The ``mcp-imagegen`` command: serve, generate, plugins, config."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from mcp_imagegen import __version__
from mcp_imagegen.config import Settings, load_settings
from mcp_imagegen.errors import ConfigurationError, MCPImageError, PluginError
from mcp_imagegen.logs import configure_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="mcp-imagegen",
        description="MCP server that turns text prompts into images.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "-c", "--config", metavar="PATH", help="TOML configuration file to read."
    )
    parser.add_argument(
        "--backend",
        metavar="NAME",
        help="Default backend instance (generation.backend).",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        help="Log level (logging.level).",
    )
    parser.add_argument(
        "--log-format", choices=["auto", "console", "json"], help="logging.format."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("serve", help="Run the MCP server on stdio.")

    gen = commands.add_parser(
        "generate", help="Generate images once and print where they are."
    )
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
    gen.add_argument("--json", action="store_true", help="Print records as JSON.")

    plugins = commands.add_parser("plugins", help="List loaded plugins.")
    plugins.add_argument("--json", action="store_true", help="Print JSON.")

    commands.add_parser(
        "config", help="Print the effective configuration (secrets hidden)."
    )
    return parser


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
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        settings = load_settings(args.config, _overrides(args))
        configure_logging(settings.logging)
        if args.command == "config":
            return _config(settings)
        if args.command == "plugins":
            return _plugins(settings, as_json=args.json)
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


def _serve(settings: Settings) -> int:
    from mcp_imagegen.app import create_server
    from mcp_imagegen.memory import limit_arenas_for_serving

    # Before any worker thread exists: threads take their arenas at first malloc.
    limit_arenas_for_serving()
    server = create_server(settings)
    try:
        server.run("stdio")
    except BaseExceptionGroup as group:
        # The SDK enters the lifespan inside its task groups, so a component that
        # fails to start (an unwritable image directory, an unreachable bucket)
        # arrives wrapped; re-raise our own error for main() to report in one line.
        ours = group.subgroup(lambda exc: isinstance(exc, MCPImageError))
        if ours is None:
            raise
        first: BaseException = ours
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return EXIT_OK


def _config(settings: Settings) -> int:
    from mcp_imagegen.service import ImageService

    # Building the service validates every component table, so an invalid table
    # is reported here exactly as at start-up.
    service = ImageService.from_settings(settings)
    print(json.dumps(service.effective_configuration(), indent=2))
    return EXIT_OK


def _plugins(settings: Settings, *, as_json: bool) -> int:
    from mcp_imagegen.plugins import load_plugins

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
    from mcp_imagegen.plugins import load_plugins
    from mcp_imagegen.service import ImageService

    request = settings.generation.request(
        args.prompt,
        negative_prompt=args.negative_prompt,
        width=args.width,
        height=args.height,
        num_images=args.num_images,
        seed=args.seed,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
    )
    postprocess = None
    if args.postprocess is not None:
        postprocess = [s.strip() for s in args.postprocess.split(",") if s.strip()]
    tty = sys.stderr.isatty()

    async def progress(
        done: float, total: float | None = None, message: str | None = None
    ) -> None:
        text = f"{done:g}/{total:g}" if total else f"{done:g}"
        line = f"generating: {text} {message or ''}".rstrip()
        print(
            ("\r" + line + "\033[K") if tty else line,
            end="" if tty else "\n",
            file=sys.stderr,
        )

    service = ImageService.from_settings(
        settings, load_plugins(settings.plugins.disabled)
    )
    async with service:
        records = await service.generate(
            request, progress, postprocess=postprocess, output_format=args.output_format
        )
        if tty:
            print(file=sys.stderr)
        for record in records:
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
