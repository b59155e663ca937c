"""``tool_called``: one server log line per tool call, for the operator only."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import mcp
import pytest
from mcp.types import LoggingMessageNotificationParams
from structlog.testing import capture_logs

from mcp_imagegen._config import LoggingSettings
from mcp_imagegen._logs import configure_logging
from mcp_imagegen._mcp import ImageGenServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:The logging capability is deprecated"),
]

SMALL = {"width": 64, "height": 64}
PNG_DATA = "data:image/png;base64,iVBORw0KGgo="


def tool_lines(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "tool_called"]


async def test_each_call_logs_tool_outcome_and_the_images_it_named_or_made(
    make_server: Callable[..., ImageGenServer],
) -> None:
    with capture_logs() as logs:
        async with mcp.Client(make_server()) as client:
            made = await client.call_tool(
                "generate_image", {"prompt": "a kite", **SMALL}
            )
            [image] = made.structured_content["images"]
            await client.call_tool("get_image", {"image_id": image["id"]})
            await client.call_tool("delete_image", {"image_id": image["id"]})
            # An error result: the image is gone.
            await client.call_tool("get_image", {"image_id": image["id"]})
            # Data in an argument: no id in it, and nothing of it is logged.
            await client.call_tool("edit_image", {"image": PNG_DATA, "prompt": "x"})
            unknown = await client.call_tool("no_such_tool", {"secret": "s3"})
            assert unknown.is_error

    lines = tool_lines(logs)
    assert [(line["tool"], line["outcome"]) for line in lines] == [
        ("generate_image", "ok"),
        ("get_image", "ok"),
        ("delete_image", "ok"),
        ("get_image", "error"),
        ("edit_image", "error"),
        ("unknown", "error"),
    ]
    assert [line["image_ids"] for line in lines] == [[image["id"]]] * 4 + [[], []]
    # Over stdio (or HTTP without [server.auth]) nobody is authenticated.
    assert all(line["client"] is None for line in lines)
    assert all(line["generation_id"] is None for line in lines)
    assert all(line["duration_ms"] >= 0 for line in lines)
    assert all(line["log_level"] == "info" for line in lines)
    assert unknown.is_error
    text = json.dumps(lines)
    assert "a kite" not in text  # no prompts
    assert "base64" not in text  # no data
    assert "no_such_tool" not in text and "s3" not in text  # client-chosen text


async def test_a_call_answered_while_it_goes_on_logs_its_generation_id(
    make_server: Callable[..., ImageGenServer],
) -> None:
    with capture_logs() as logs:
        async with mcp.Client(make_server()) as client:
            answered = await client.call_tool(
                "generate_image", {"prompt": "a kite", "wait": False, **SMALL}
            )
            generation = answered.structured_content["generation_id"]
            with anyio.fail_after(30):
                while True:
                    got = await client.call_tool(
                        "get_generation", {"generation_id": generation}
                    )
                    if got.structured_content.get("status") != "working":
                        break
                    await anyio.sleep(0.05)

    started, *polls = tool_lines(logs)
    assert (started["tool"], started["generation_id"]) == ("generate_image", generation)
    assert started["image_ids"] == []
    done = polls[-1]
    assert (done["tool"], done["generation_id"]) == ("get_generation", generation)
    assert done["image_ids"] == [got.structured_content["images"][0]["id"]]


@pytest.mark.usefixtures("restore_logging")
async def test_the_line_is_never_sent_to_clients(
    make_server: Callable[..., ImageGenServer], capsys: pytest.CaptureFixture[str]
) -> None:
    # The server's own log: JSON on (captured) stderr, every event.
    configure_logging(LoggingSettings(level="debug", format="json"))
    received: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with mcp.Client(
        make_server(), mode="legacy", logging_callback=on_log
    ) as client:
        await client.set_logging_level("debug")
        await client.call_tool("generate_image", {"prompt": "a kite", **SMALL})
        # A second call: the first call's line, logged as it ended, would be
        # on its way by now.
        await client.call_tool("list_images", {})

    # The server's own log (JSON on stderr) has both lines.
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(tool_lines(logged)) == 2
    sent = [message.data["event"] for message in received]
    assert "image_generated" in sent  # client logging works
    assert "tool_called" not in sent
