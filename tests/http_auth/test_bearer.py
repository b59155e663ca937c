"""Static bearer tokens over streamable HTTP: 401s, metadata, scopes, no leaks."""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from mcp_imagegen._config import redacted_dump, settings_from_dict
from mcp_imagegen._http.auth import auth_enabled, auth_for, read_tokens_file
from mcp_imagegen.errors import ConfigurationError
from tests.http_auth.conftest import Running, mcp_session

pytestmark = pytest.mark.anyio

TOKEN = "s3cr3t-token-A-0123456789"
SMALL = {"prompt": "a small cat", "width": 64, "height": 64}


def test_no_token_is_401_pointing_at_the_metadata(
    serve: Callable[[dict[str, Any]], Running],
) -> None:
    running = serve({"mode": "bearer", "tokens": TOKEN})
    response = httpx.post(
        running.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
    )
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    metadata_url = running.base + "/.well-known/oauth-protected-resource/mcp"
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{metadata_url}"' in challenge

    metadata = httpx.get(metadata_url)
    assert metadata.status_code == 200
    document = metadata.json()
    assert document["resource"] == running.url
    assert document["scopes_supported"] == [
        "images:generate",
        "images:read",
        "images:delete",
    ]
    assert document["bearer_methods_supported"] == ["header"]
    # Static tokens come from no authorization server: naming one would send
    # OAuth clients to discover a server that does not exist.
    assert "authorization_servers" not in document


def test_wrong_token_is_401_and_not_echoed(
    serve: Callable[[dict[str, Any]], Running], capfd: pytest.CaptureFixture[str]
) -> None:
    running = serve({"mode": "bearer", "tokens": TOKEN})
    wrong = "wrong-token-B-9876543210"
    response = httpx.post(
        running.url,
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Authorization": f"Bearer {wrong}"},
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert wrong not in response.text + str(response.headers)
    out, err = capfd.readouterr()
    assert wrong not in out + err
    assert "auth_rejected" in err


async def test_right_token_serves_and_is_never_logged(
    serve: Callable[[dict[str, Any]], Running], capfd: pytest.CaptureFixture[str]
) -> None:
    running = serve({"mode": "bearer", "tokens": f"other-token,{TOKEN}"})
    async with mcp_session(running.url, TOKEN) as session:
        tools = await session.list_tools()
        assert "generate_image" in {tool.name for tool in tools.tools}
        result = await session.call_tool("generate_image", SMALL)
        assert not result.is_error
        listed = await session.call_tool("list_images", {})
        assert not listed.is_error
        resources = await session.list_resources()
        assert resources.resources
    out, err = capfd.readouterr()
    assert "server_started" in err  # the logs were captured, at debug level
    assert TOKEN not in out + err


@pytest.mark.parametrize("stateless", [True, False], ids=["stateless", "stateful"])
async def test_missing_scope_is_a_clear_error(
    serve: Callable[..., Running], stateless: bool
) -> None:
    running = serve(
        {"mode": "bearer", "tokens": TOKEN, "bearer_scopes": ["images:read"]},
        stateless=stateless,
    )
    async with mcp_session(running.url, TOKEN) as session:
        with pytest.raises(MCPError) as raised:
            await session.call_tool("generate_image", SMALL)
        assert raised.value.error.message.startswith("insufficient_scope")
        assert "'images:generate'" in raised.value.error.message
        assert "generate_image" in raised.value.error.message
        assert raised.value.error.data == {
            "error": "insufficient_scope",
            "scope": "images:generate",
        }
        with pytest.raises(MCPError, match="'images:delete'"):
            await session.call_tool("delete_image", {"image_id": "0" * 32})
        # What the token may do still works, on the same session.
        assert not (await session.call_tool("list_images", {})).is_error
        assert not (await session.call_tool("list_backends", {})).is_error
        await session.list_resources()


async def test_resources_need_the_read_scope(
    serve: Callable[[dict[str, Any]], Running],
) -> None:
    running = serve(
        {"mode": "bearer", "tokens": TOKEN, "bearer_scopes": ["images:generate"]}
    )
    async with mcp_session(running.url, TOKEN) as session:
        result = await session.call_tool("generate_image", SMALL)
        assert not result.is_error
        with pytest.raises(
            MCPError, match="resources/list needs the scope 'images:read'"
        ):
            await session.list_resources()
        with pytest.raises(MCPError, match="'images:read'"):
            await session.call_tool("get_image", {"image_id": "0" * 32})


async def test_tokens_file_of_sha256_digests(
    serve: Callable[[dict[str, Any]], Running], tmp_path: Path
) -> None:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# team tokens\n\n{digest.upper()}  # alice\n")
    running = serve({"mode": "bearer", "tokens_file": str(tokens_file)})
    async with mcp_session(running.url, TOKEN) as session:
        assert (await session.list_tools()).tools
    async with httpx.AsyncClient() as client:
        response = await client.post(
            running.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": f"Bearer {digest}"},  # the digest is no token
        )
    assert response.status_code == 401


def test_malformed_tokens_file_names_key_and_line(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# ok\nplain-token-pasted-by-mistake\n")
    with pytest.raises(ConfigurationError) as raised:
        read_tokens_file(tokens_file)
    message = str(raised.value)
    assert "server.auth.tokens_file" in message
    assert "line 2" in message
    assert "sha256" in message
    assert "plain-token-pasted-by-mistake" not in message


def test_settings_need_tokens_and_mask_them() -> None:
    with pytest.raises(ConfigurationError, match="MCP_IMAGEGEN_SERVER__AUTH__TOKENS"):
        settings_from_dict({"server": {"auth": {"mode": "bearer"}}})
    with pytest.raises(
        ConfigurationError, match=r"server\.auth\.issuer and server\.auth\.jwks_url"
    ):
        settings_from_dict({"server": {"auth": {"mode": "jwt"}}})
    with pytest.raises(ConfigurationError, match=r"server\.auth\.bearer_scopes"):
        settings_from_dict(
            {
                "server": {
                    "auth": {
                        "mode": "bearer",
                        "tokens": "x",
                        "bearer_scopes": "images:all",
                    }
                }
            }
        )
    settings = settings_from_dict(
        {"server": {"auth": {"mode": "bearer", "tokens": TOKEN}}}
    )
    assert auth_enabled(settings)
    assert not auth_enabled(settings_from_dict({}))
    assert auth_for(settings_from_dict({})) == (None, None)
    assert TOKEN not in str(redacted_dump(settings))
    assert TOKEN not in repr(settings)


def test_tokens_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    from mcp_imagegen._config import load_settings

    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__AUTH__MODE", "bearer")
    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__AUTH__TOKENS", f"{TOKEN}, second")
    settings = load_settings(search=False)
    tokens = [t.get_secret_value() for t in settings.server.auth.tokens]
    assert tokens == [TOKEN, "second"]


@pytest.mark.usefixtures("isolated_env", "restore_logging")
def test_config_command_comments_out_masked_tokens(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mcp_imagegen import _cli as cli

    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__AUTH__MODE", "bearer")
    monkeypatch.setenv("MCP_IMAGEGEN_SERVER__AUTH__TOKENS", f"{TOKEN},second")

    code = cli.main(["config"])

    out, err = capsys.readouterr()
    assert code == 0, err
    assert TOKEN not in out + err
    # Fed back with --config, a list of masks must not make "**********" a token.
    auth = tomllib.loads(out)["server"]["auth"]
    assert "tokens" not in auth
    assert '# tokens = ["**********", "**********"]' in out


def test_tokens_file_without_digests_is_refused(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# nobody yet\n")
    settings = settings_from_dict(
        {"server": {"auth": {"mode": "bearer", "tokens_file": str(tokens_file)}}}
    )
    with pytest.raises(ConfigurationError, match="lists no token digest"):
        auth_for(settings)
