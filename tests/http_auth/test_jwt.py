"""JWT access tokens verified against a JWKS the test serves: expiry, audience,
issuer, scopes and key rotation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.http_auth.conftest import ISSUER, Issuer, Running, mcp_session

pytestmark = pytest.mark.anyio

SMALL = {"prompt": "a small cat", "width": 64, "height": 64}
PING = {"jsonrpc": "2.0", "id": 1, "method": "ping"}


def jwt_auth(issuer: Issuer, **extra: Any) -> dict[str, Any]:
    return {
        "mode": "jwt",
        "issuer": ISSUER,
        "jwks_url": issuer.jwks_url,
        "jwks_refetch_cooldown": "PT0S",
        **extra,
    }


def post(running: Running, token: str) -> httpx.Response:
    return httpx.post(
        running.url, json=PING, headers={"Authorization": f"Bearer {token}"}
    )


async def test_valid_token_serves_and_metadata_names_the_issuer(
    serve: Callable[[dict[str, Any]], Running],
    issuer: Issuer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    issuer.new_key("k1")
    running = serve(jwt_auth(issuer))
    token = issuer.token("k1", audience=running.url)
    async with mcp_session(running.url, token) as session:
        result = await session.call_tool("generate_image", SMALL)
        assert not result.is_error
    async with httpx.AsyncClient() as client:
        metadata = await client.get(
            running.base + "/.well-known/oauth-protected-resource/mcp"
        )
    document = metadata.json()
    assert document["authorization_servers"] == [ISSUER]
    assert document["resource"] == running.url
    out, err = capfd.readouterr()
    assert token not in out + err


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"lifetime": -3600}, "Signature has expired"),
        ({"aud": "https://other.example.test/mcp"}, "Audience doesn't match"),
        ({"iss": "https://evil.example.test"}, "Invalid issuer"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer"],
)
def test_invalid_tokens_are_401(
    serve: Callable[[dict[str, Any]], Running],
    issuer: Issuer,
    capfd: pytest.CaptureFixture[str],
    claims: dict[str, Any],
    reason: str,
) -> None:
    issuer.new_key("k1")
    running = serve(jwt_auth(issuer))
    claims = {"audience": running.url, **claims}
    if "aud" in claims:
        claims["audience"] = claims.pop("aud")
    token = issuer.token("k1", **claims)
    response = post(running, token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert token not in response.text
    # A valid token still works: the server keeps serving.
    assert post(running, issuer.token("k1", audience=running.url)).status_code == 200
    out, err = capfd.readouterr()
    assert reason in err  # the log says why, for the operator
    assert token not in out + err


def test_token_signed_by_an_unpublished_key_is_401(
    serve: Callable[[dict[str, Any]], Running], issuer: Issuer
) -> None:
    issuer.new_key("k1")
    issuer.new_key("rogue")
    issuer.published.remove("rogue")
    running = serve(jwt_auth(issuer))
    assert post(running, issuer.token("rogue", audience=running.url)).status_code == 401
    # Same kid as a published key, wrong key material.
    forged = issuer.token("rogue", audience=running.url)
    import jwt as pyjwt

    header_swapped = pyjwt.encode(
        pyjwt.decode(forged, options={"verify_signature": False}),
        issuer.keys["rogue"],
        "ES256",
        headers={"kid": "k1"},
    )
    assert post(running, header_swapped).status_code == 401


async def test_missing_scope_names_it(
    serve: Callable[[dict[str, Any]], Running], issuer: Issuer
) -> None:
    issuer.new_key("k1")
    running = serve(jwt_auth(issuer))
    token = issuer.token("k1", audience=running.url, scope="images:read")
    async with mcp_session(running.url, token) as session:
        assert not (await session.call_tool("list_images", {})).is_error
        with pytest.raises(MCPError, match="needs the scope 'images:generate'"):
            await session.call_tool("generate_image", SMALL)
        with pytest.raises(MCPError, match="needs the scope 'images:delete'"):
            await session.call_tool("delete_image", {"image_id": "0" * 32})


def test_required_scopes_apply_to_every_request(
    serve: Callable[[dict[str, Any]], Running], issuer: Issuer
) -> None:
    issuer.new_key("k1")
    running = serve(jwt_auth(issuer, required_scopes=["mcp:access"]))
    without = issuer.token("k1", audience=running.url, scope="images:read")
    response = post(running, without)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert "mcp:access" in response.json()["error_description"]
    with_it = issuer.token("k1", audience=running.url, scope="mcp:access images:read")
    assert post(running, with_it).status_code == 200


def test_key_rotation_refetches_the_jwks(
    serve: Callable[[dict[str, Any]], Running], issuer: Issuer
) -> None:
    issuer.new_key("k1")
    running = serve(jwt_auth(issuer))
    assert post(running, issuer.token("k1", audience=running.url)).status_code == 200
    assert post(running, issuer.token("k1", audience=running.url)).status_code == 200
    assert issuer.fetches == 1  # the key set is cached

    issuer.new_key("k2")
    issuer.published.remove("k1")  # rotated: k1 retired, k2 signs
    assert post(running, issuer.token("k2", audience=running.url)).status_code == 200
    assert issuer.fetches == 2
