"""Tool-argument fuzz over MCP: every tool, random argument dicts.

Types, sizes, unicode, huge and negative numbers, NaN and unknown keys go to every
tool through a real in-memory MCP client. Each call must end in a result or an
``isError`` result with a message that names the problem (never "internal
error"), and the server must keep answering afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import mcp
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import given, settings
from mcp.types import CallToolResult

from tests.soak.conftest import FUZZ_EXAMPLES
from tests.soak.fuzzing import check_tool_answer, tool_arguments
from tests.soak.workload import result_text

SETTINGS = {
    "limits": {"max_side": 70_000, "max_pixels": 70_000 * 64},
    # A step an operator may configure: stretch to 16,384 px wide.
    "postprocess": {
        "widen": {
            "type": "resize",
            "width": 16_384,
            "height": 64,
            "fit": "stretch",
            "upscale": True,
        }
    },
}
#: Arguments a fuzzed call starts from, with "<id>" replaced by a stored image.
VALID: dict[str, dict[str, Any]] = {
    "generate_image": {"prompt": "a fuzzed cat", "width": 64, "height": 64},
    "transform_image": {"image_id": "<id>", "postprocess": ["strip_metadata"]},
    "list_images": {"limit": 5},
    "get_image": {"image_id": "<id>"},
    "delete_image": {"image_id": "<id>"},
    "list_backends": {},
}
#: Calls the issue's fuzzing found, kept as fixed examples.
EDGE_CASES: dict[str, list[dict[str, Any]]] = {
    "generate_image": [
        {"prompt": "wide", "width": 16_384, "height": 64, "output_format": "webp"},
        {"prompt": "wider", "width": 65_536, "height": 64, "output_format": "jpeg"},
    ],
    "transform_image": [
        {"image_id": "<id>", "postprocess": []},
        {"image_id": "<id>", "postprocess": ["widen"], "output_format": "webp"},
    ],
}

TOOLS = [
    "generate_image",
    "transform_image",
    "list_images",
    "get_image",
    "delete_image",
    "list_backends",
]


class Session:
    """An MCP client entered in a portal's event loop, callable from sync code."""

    def __init__(self, portal: BlockingPortal, client: mcp.Client) -> None:
        self.portal = portal
        self.client = client
        tools = portal.call(client.list_tools).tools
        self.parameters = {
            tool.name: sorted(tool.input_schema.get("properties", {})) for tool in tools
        }

    def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult | Exception:
        async def call() -> CallToolResult:
            return await self.client.call_tool(tool, arguments)

        try:
            return self.portal.call(call)
        except Exception as exc:  # judged by check_tool_answer
            return exc


@pytest.fixture
def session(connect: Callable[..., mcp.Client]) -> Iterator[Session]:
    """One server and client for every example of a test (as a real session).

    The limits allow very wide images and a step widens images to 16,384 px, as
    an operator may configure them, so that format limits (WebP 16,383 px, JPEG
    65,500 px) are reachable.
    """
    with start_blocking_portal(backend="asyncio") as portal:
        with portal.wrap_async_context_manager(connect(SETTINGS)) as client:
            yield Session(portal, client)


def still_answers(session: Session) -> None:
    """The server still lists backends and generates an image after the fuzzing."""
    backends = session.call("list_backends", {})
    assert isinstance(backends, CallToolResult) and not backends.is_error, backends
    made = session.call("generate_image", {"prompt": "after fuzz", "width": 64})
    assert isinstance(made, CallToolResult), made
    assert not made.is_error, result_text(made)


@pytest.mark.parametrize("tool", TOOLS)
def test_random_arguments_get_a_result_or_a_clear_error(
    session: Session, tool: str
) -> None:
    assert tool in session.parameters
    made = session.call("generate_image", VALID["generate_image"])
    assert isinstance(made, CallToolResult) and made.structured_content, made
    image_id = made.structured_content["images"][0]["id"]
    problems: list[str] = []

    def check(arguments: dict[str, Any]) -> None:
        arguments = {k: image_id if v == "<id>" else v for k, v in arguments.items()}
        problem = check_tool_answer(tool, arguments, session.call(tool, arguments))
        if problem:
            problems.append(problem)

    for arguments in EDGE_CASES.get(tool, []):
        check(arguments)

    @settings(settings.get_profile("soak"), max_examples=FUZZ_EXAMPLES)
    @given(arguments=tool_arguments(session.parameters[tool], VALID[tool]))
    def fuzz(arguments: dict[str, Any]) -> None:
        check(arguments)

    fuzz()

    assert problems == [], "\n".join(problems[:10])
    still_answers(session)
