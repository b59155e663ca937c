"""Guidance for the model: a prompt per style, ``prompt-guide`` and ``style://list``.

Everything here is built from the live configuration: the styles the server
was started with, and (at ``prompts/get`` time) the backends' capabilities,
sizes and steps, the post-processing steps and the output formats.
"""

# No ``from __future__ import annotations``: the SDK reads the prompt
# functions' signatures (and their Context parameter) as evaluated objects.

import json
from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS
from pydantic import Field

from mcp_imagegen._mcp.tools import ToolContext, service_of
from mcp_imagegen._service import ImageService
from mcp_imagegen._styles import describe_style
from mcp_imagegen.models import OUTPUT_FORMATS, Style

#: The URI of the styles resource.
STYLE_LIST_URI = "style://list"
GUIDE_PROMPT = "prompt-guide"

Subject = Annotated[
    str,
    Field(description="What the image should show, e.g. 'a lighthouse at dusk'."),
]


def style_names(service: ImageService) -> list[str]:
    """The enabled style names, sorted: the values of the ``style`` argument."""
    return sorted(service.styles)


def style_list(service: ImageService) -> str:
    """The ``style://list`` document: every enabled style as JSON."""
    return json.dumps(
        {
            "styles": [
                describe_style(name, service.styles[name])
                for name in style_names(service)
            ]
        },
        indent=2,
    )


def style_request(name: str, style: Style, subject: str) -> str:
    """The user message of a style's prompt: call generate_image with the style."""
    subject = subject.strip()
    defaults = describe_style(name, style)["defaults"]
    set_by_style = (
        ", ".join(f"{key}={value}" for key, value in defaults.items())
        if defaults
        else "none beyond the template"
    )
    return (
        f"Create an image of: {subject}\n\n"
        f"Use the '{name}' style"
        + (f" ({style.description.rstrip('.')})" if style.description else "")
        + f'. Call the generate_image tool with style="{name}" and a prompt '
        "that describes the subject concretely: the main subject first, then "
        "its setting, composition, lighting and mood, as a comma-separated "
        "phrase of under 60 words. Do not repeat the style's own wording: the "
        f'server wraps your prompt in the template "{style.prompt}" and adds '
        "the style's negative prompt. Leave width, height, steps and "
        "guidance_scale out unless the request calls for them (the style's "
        f"defaults: {set_by_style}); pick width and height for the subject's "
        "shape (landscape for scenes, portrait for standing figures). Show the "
        "result, and offer a variation with another seed if it misses."
    )


def _style_prompt(name: str, style: Style) -> Prompt:
    def render(subject: Subject) -> list[UserMessage]:
        return [UserMessage(style_request(name, style, subject))]

    return Prompt.from_function(
        render,
        name=name,
        title=f"{name} image",
        description=(style.description or f"An image in the '{name}' style.")
        + f' Calls generate_image with style="{name}".',
    )


#: The server-independent part of the guide: how diffusion models read prompts.
_PROMPTING = [
    "# Writing prompts for this image server",
    "",
    "Diffusion models match words to pictures; they do not follow "
    "instructions or hold a conversation. Good prompts:",
    '- Name the subject first, concretely ("a red fox curled up asleep"), '
    "then the setting, composition (close-up, wide shot, from above), "
    "lighting (golden hour, soft studio light) and mood.",
    "- Use short comma-separated phrases, not sentences or requests "
    '("please draw"); under about 60 words. Words early in the prompt '
    "weigh more.",
    "- Name a medium or style (photograph, watercolor, line art) or pass "
    "a style argument instead of describing it at length.",
    "- Say what to avoid in negative_prompt (blurry, text, extra fingers), "
    'never as "no ..." in the prompt: a negated word still pulls the '
    "image towards it.",
    "- Text inside images comes out garbled on most models; avoid asking for it.",
    "- Pick the size for the subject's shape: landscape for scenes, "
    "portrait for figures. More steps are slower and only sometimes "
    "better; guidance_scale 5-9 balances prompt adherence and quality.",
    "- Pass a seed to reproduce an image, then vary one thing at a time.",
]


def prompt_guide(service: ImageService) -> str:
    """How to prompt diffusion models, and what this server offers right now."""
    settings = service.settings
    limits, defaults = settings.limits, settings.generation
    lines = [*_PROMPTING, "", "## Backends"]
    lines += [_backend_line(service, name) for name in sorted(service.backends)]
    lines += [
        "",
        f"Default size {defaults.width}x{defaults.height}, "
        f"{defaults.num_images} image(s) per call; prompts up to "
        f"{limits.max_prompt_length} characters.",
        "",
        "## Styles (generate_image's style argument; each is also a prompt)",
    ]
    if service.styles:
        for name in style_names(service):
            style = service.styles[name]
            lines.append(f"- {name}: {style.description or style.prompt}")
        lines.append(
            "A style wraps your prompt in its template and adds its negative "
            "prompt and defaults; arguments you give explicitly win. Read "
            f"{STYLE_LIST_URI} for the templates."
        )
    else:
        lines.append("- none configured")
    chain = ", ".join(defaults.postprocess) or "none"
    lines += [
        "",
        "## Output",
        f"- output_format: {', '.join(OUTPUT_FORMATS)}"
        + (
            f" (default {defaults.output_format})."
            if defaults.output_format
            else " (default: the backend's format)."
        ),
        f"- postprocess steps: {', '.join(sorted(service.steps)) or 'none'}; "
        f"default chain: {chain}. transform_image applies steps to a stored "
        "image.",
    ]
    return "\n".join(lines)


def _backend_line(service: ImageService, name: str) -> str:
    """One backend's limits as the guide lists them (within ``[limits]``)."""
    limits = service.settings.limits
    caps = service.backends[name].capabilities
    low, high = max(limits.min_side, caps.min_side), min(limits.max_side, caps.max_side)
    facts = [
        f"sides {low}-{high} px, multiples of "
        f"{max(limits.side_multiple, caps.side_multiple)}, at most "
        f"{min(limits.max_pixels, caps.max_pixels)} pixels",
        f"up to {min(limits.max_images, caps.max_images)} images per call",
    ]
    if caps.supports_steps:
        steps = f"steps 1-{limits.max_steps}"
        if caps.default_steps:
            steps += f" (default {caps.default_steps})"
        facts.append(steps)
    if not caps.supports_negative_prompt:
        facts.append("no negative_prompt")
    if not caps.supports_guidance_scale:
        facts.append("no guidance_scale")
    if caps.models:
        facts.append(f"models: {', '.join(caps.models)}")
    marker = " (default)" if name == service.settings.generation.backend else ""
    return f"- {name}{marker}: {'; '.join(facts)}."


async def _guide(ctx: ToolContext) -> list[UserMessage]:
    return [UserMessage(prompt_guide(service_of(ctx)))]


async def check_prompt_request(
    server: MCPServer[ImageService], name: str, arguments: dict[str, Any] | None
) -> None:
    """Refuse an unknown prompt or a missing argument with a clear -32602 error.

    The SDK turns both into a logged traceback and "Internal server error";
    a client (or the model behind it) needs to know what to send instead.

    Raises:
        MCPError: INVALID_PARAMS, naming the prompt and what it accepts.
    """
    prompts = {prompt.name: prompt for prompt in await server.list_prompts()}
    prompt = prompts.get(name)
    if prompt is None:
        known = ", ".join(sorted(prompts))
        raise MCPError(INVALID_PARAMS, f"Unknown prompt '{name}'. Available: {known}.")
    given = arguments or {}
    for argument in prompt.arguments or []:
        value = given.get(argument.name)
        if argument.required and (value is None or not str(value).strip()):
            raise MCPError(
                INVALID_PARAMS,
                f"Prompt '{name}' needs the argument '{argument.name}': "
                f"{argument.description or 'a non-empty text'}",
            )


def register(server: MCPServer[ImageService], service: ImageService) -> None:
    """Add a prompt per enabled style, ``prompt-guide`` and ``style://list``."""
    for name in style_names(service):
        server.add_prompt(_style_prompt(name, service.styles[name]))
    server.add_prompt(
        Prompt.from_function(
            _guide,
            name=GUIDE_PROMPT,
            title="Prompt guide",
            description="How to write prompts for diffusion models, and the "
            "backends, sizes, steps, styles, output formats and post-processing "
            "steps this server offers.",
        )
    )

    def read_styles() -> str:
        # Styles are fixed when the server is built: no request context needed.
        return style_list(service)

    server.resource(
        STYLE_LIST_URI,
        name="styles",
        title="Styles",
        description="The styles generate_image accepts: name, description, "
        "prompt template, negative prompt and defaults (JSON).",
        mime_type="application/json",
    )(read_styles)
