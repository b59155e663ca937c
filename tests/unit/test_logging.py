"""Structured logs: stderr only, secrets redacted, prompts kept out by default."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable

import pytest
import structlog
from structlog.testing import capture_logs

from mcp_imagegen import GenerationRequest
from mcp_imagegen._app import build_service
from mcp_imagegen._config import LoggingSettings, Settings
from mcp_imagegen._logs import REDACTED, configure_logging, redact_secrets
from mcp_imagegen._plugins import PluginManager

pytestmark = pytest.mark.anyio


def test_secret_looking_keys_are_redacted_and_others_kept() -> None:
    event = {
        "event": "request_sent",
        "token": "t",
        "api_key": "k",
        "Authorization": "Bearer x",
        "aws_secret_access_key": "s",
        "image_id": "kept",
    }

    redacted = redact_secrets(None, "info", dict(event))

    assert redacted == {
        "event": "request_sent",
        "token": REDACTED,
        "api_key": REDACTED,
        "Authorization": REDACTED,
        "aws_secret_access_key": REDACTED,
        "image_id": "kept",
    }


@pytest.mark.usefixtures("restore_logging")
def test_json_logs_go_to_stderr_only_with_secrets_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(LoggingSettings(format="json", level="info"))

    structlog.get_logger("test").info("backend_called", token="t0k3n", status=200)

    out, err = capsys.readouterr()
    assert out == ""
    event = json.loads(err.strip().splitlines()[-1])
    assert event["event"] == "backend_called"
    assert event["token"] == REDACTED
    assert event["status"] == 200
    assert event["level"] == "info"
    assert "t0k3n" not in err


@pytest.mark.usefixtures("restore_logging")
def test_events_below_the_configured_level_are_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(LoggingSettings(format="json", level="warning"))

    structlog.get_logger("test").info("chatty")
    structlog.get_logger("test").warning("important")

    err = capsys.readouterr().err
    assert "chatty" not in err
    assert "important" in err


@pytest.mark.parametrize("log_prompts", [False, True])
async def test_image_generated_event_has_ids_and_durations_and_prompt_only_if_enabled(
    log_prompts: bool,
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
) -> None:
    settings = make_settings({"logging": {"log_prompts": log_prompts}})

    with capture_logs() as logs:
        async with build_service(settings, plugin_manager) as service:
            [generated] = await service.generate(
                GenerationRequest(prompt="a private prompt", width=64, height=64)
            )
            record = generated.record

    [event] = [e for e in logs if e["event"] == "image_generated"]
    assert event["image_id"] == record.id
    assert event["backend"] == "placeholder"
    assert {"generate_ms", "postprocess_ms", "save_ms"} <= set(event)
    assert ("prompt" in event) is log_prompts
    other_events = [e for e in logs if e["event"] != "image_generated"]
    assert "a private prompt" not in repr(other_events)


@pytest.mark.usefixtures("restore_logging")
def test_stdlib_logs_render_as_json_through_the_same_processors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(LoggingSettings(format="json", level="info"))

    logging.getLogger("httpx").warning(
        "request to %s failed", "kserve", extra={"token": "t0k3n", "attempt": 2}
    )
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("mcp.server").exception("handler crashed")
    warnings.warn("old api", DeprecationWarning, stacklevel=1)

    out, err = capsys.readouterr()
    assert out == ""
    events = [json.loads(line) for line in err.strip().splitlines()]
    first, crashed = events[0], events[1]
    assert first["event"] == "request to kserve failed"
    assert first["logger"] == "httpx"
    assert first["level"] == "warning"
    assert first["token"] == REDACTED
    assert first["attempt"] == 2
    assert "timestamp" in first
    assert crashed["event"] == "handler crashed"
    assert "RuntimeError: boom" in crashed["exception"]
    assert any("old api" in event["event"] for event in events[2:])
    assert "t0k3n" not in err
