"""Credentials in URLs never reach errors, ``config`` output, logs or exit messages.

Issue 8, item 5: one function (:func:`redact_url_text`) masks userinfo and secret
query values wherever a URL may be echoed. Passwords hold the characters that
defeated the old regex: ``'``, ``"``, space, ``/`` and ``@``.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
import structlog

from mcp_imagegen import redact_url_text
from mcp_imagegen._app import build_service
from mcp_imagegen._config import load_settings
from mcp_imagegen._logs import configure_logging
from mcp_imagegen.errors import ConfigurationError
from tests.conftest import MCP_IMAGEGEN_BIN

EXIT_CONFIG = 2

#: Each password starts with HEAD and ends with TAIL; neither may ever be shown.
HEAD, TAIL = "Hd9q", "Tl7z"
PASSWORDS = [
    f"{HEAD}it's{TAIL}",
    f'{HEAD}say"hi{TAIL}',
    f"{HEAD}two words{TAIL}",
    f"{HEAD}a/b{TAIL}",
    f"{HEAD}p@ss{TAIL}",
    f"{HEAD}'\" /@{TAIL}",
]


def assert_hidden(text: str, password: str) -> None:
    assert HEAD not in text and TAIL not in text, text
    # Every piece of the password between special characters is hidden too.
    for piece in password.replace("'", " ").replace('"', " ").split():
        for part in piece.replace("/", "@").split("@"):
            if len(part) >= 4:
                assert part not in text, (part, text)


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def run_cli(
    env: dict[str, str], cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MCP_IMAGEGEN_BIN), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


# -- the function --------------------------------------------------------------------


@pytest.mark.parametrize("password", PASSWORDS)
def test_userinfo_is_masked_whatever_the_password_holds(password: str) -> None:
    text = f"cannot reach https://alice:{password}@models.example.com:8443/v1 (503)"

    redacted = redact_url_text(text)

    assert_hidden(redacted, password)
    assert "models.example.com:8443/v1 (503)" in redacted


def test_secret_query_values_are_masked_and_others_kept() -> None:
    text = (
        "https://h.example/p?page=2&token=tkSECRET1&X-Amz-Signature=sgSECRET2"
        "&X-Amz-Credential=crSECRET3&sig=sSECRET4 done"
    )

    redacted = redact_url_text(text)

    assert "SECRET" not in redacted
    assert "page=2" in redacted and redacted.endswith(" done")


def test_text_without_credentials_is_unchanged() -> None:
    text = "http://127.0.0.1:8080/v2/models/m/infer and https://example.com/@user"

    assert redact_url_text(text) == text


# -- configuration errors ------------------------------------------------------------


@pytest.mark.parametrize("password", PASSWORDS)
def test_kserve_url_with_credentials_is_refused_without_echoing_them(
    isolated_env: Path, password: str
) -> None:
    path = isolated_env / "c.toml"
    url = f"https://alice:{password}@gw.example.com/serving"
    path.write_text(
        f'[backends.sdxl]\ntype = "kserve"\nmodel = "m"\nurl = {toml_string(url)}\n'
    )

    with pytest.raises(ConfigurationError) as caught:
        build_service(load_settings(path))

    message = str(caught.value)
    assert "backends.sdxl.url" in message and "credentials" in message
    assert_hidden(message, password)


def test_kserve_url_with_a_token_query_is_refused_without_echoing_it(
    isolated_env: Path,
) -> None:
    path = isolated_env / "c.toml"
    path.write_text(
        '[backends.sdxl]\ntype = "kserve"\nmodel = "m"\n'
        'url = "https://gw.example.com/serving?token=tkHd9qTl7z"\n'
    )

    with pytest.raises(ConfigurationError) as caught:
        build_service(load_settings(path))

    message = str(caught.value)
    assert "backends.sdxl.url" in message
    assert "tkHd9qTl7z" not in message


@pytest.mark.parametrize("password", PASSWORDS)
def test_s3_endpoint_with_credentials_is_refused_without_echoing_them(
    isolated_env: Path, password: str
) -> None:
    path = isolated_env / "c.toml"
    url = f"http://alice:{password}@127.0.0.1:9000"
    path.write_text(
        '[storage]\nbackend = "s3"\n'
        f'[storage.s3]\nbucket = "b"\nendpoint_url = {toml_string(url)}\n'
    )

    with pytest.raises(ConfigurationError) as caught:
        build_service(load_settings(path))

    message = str(caught.value)
    assert "storage.s3" in message and "credentials" in message
    assert_hidden(message, password)


# -- the CLI: `config` output and the exit message -----------------------------------


def test_s3_endpoint_with_credentials_exit_message_hides_them(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    password = PASSWORDS[-1]
    url = f"http://alice:{password}@127.0.0.1:9000"
    path = tmp_path / "c.toml"
    path.write_text(
        '[storage]\nbackend = "s3"\n'
        f'[storage.s3]\nbucket = "b"\nendpoint_url = {toml_string(url)}\n'
    )

    result = run_cli(subprocess_env, tmp_path / "work", "-c", str(path), "config")

    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "storage.s3" in result.stderr
    assert_hidden(result.stdout + result.stderr, password)


def test_config_output_masks_urls_in_every_string_setting(
    subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    password = PASSWORDS[-1]
    hook = f"https://alice:{password}@hooks.example.com/cb?token=tkHd9qTl7z&x=1"
    path = tmp_path / "c.toml"
    path.write_text(
        '[backends.sdxl]\ntype = "kserve"\nmodel = "m"\nurl = "http://127.0.0.1:1"\n'
        f"extra_parameters = {{ callback = {toml_string(hook)} }}\n"
    )

    result = run_cli(subprocess_env, tmp_path / "work", "-c", str(path), "config")

    assert result.returncode == 0, result.stderr
    shown = tomllib.loads(result.stdout)["backends"]["sdxl"]["extra_parameters"]
    assert shown["callback"].startswith("https://**********@hooks.example.com/cb?")
    assert "x=1" in shown["callback"]
    assert_hidden(result.stdout + result.stderr, password)
    assert "tkHd9qTl7z" not in result.stdout


# -- logs ----------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("password", PASSWORDS)
def test_log_events_mask_urls_in_every_string_value(
    capsys: pytest.CaptureFixture[str], password: str
) -> None:
    from mcp_imagegen._config import LoggingSettings

    configure_logging(LoggingSettings(format="json"))
    url = f"http://alice:{password}@127.0.0.1:9000/?token=tkHd9qTl7z"

    structlog.get_logger("test").info(
        f"start {url}",
        endpoint=url,
        nested={"urls": [url]},
        bucket="images",
    )

    err = capsys.readouterr().err
    event = json.loads(err.strip().splitlines()[-1])
    assert event["bucket"] == "images"
    assert event["endpoint"].startswith("http://**********@127.0.0.1:9000/?token=")
    assert_hidden(err, password)
    assert "tkHd9qTl7z" not in err
