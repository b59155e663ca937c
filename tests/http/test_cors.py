"""CORS for browser clients on other origins (``server.http.cors_origins``).

The settings' checks in process; the headers a real ``serve --transport http``
subprocess answers with, read with httpx (what a browser does with them is
tests/app/test_cors_browser.py's part).
"""

from __future__ import annotations

import httpx
import pytest

from mcp_imagegen._config import settings_from_dict
from mcp_imagegen._http import transport_security
from mcp_imagegen.errors import ConfigurationError
from tests.http.conftest import INITIALIZE, MCP_HEADERS, StartServer

pytestmark = pytest.mark.anyio

APP = "https://app.example.com"
DEV = "http://localhost:*"
TOKEN = "cors-test-token-8c2f"


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, "
        "mcp-protocol-version, mcp-session-id, mcp-method, mcp-name",
    }


def test_no_origin_is_allowed_by_default() -> None:
    assert settings_from_dict({}).server.http.cors_origins == []


def test_origins_are_kept_lowercase_and_join_the_origin_check() -> None:
    http = settings_from_dict(
        {
            "server": {
                "http": {"cors_origins": "https://App.Example.com,http://localhost:*"}
            }
        }
    ).server.http
    assert http.cors_origins == [APP, DEV]
    # A listed origin passes the DNS-rebinding Origin check too, on any bind.
    public = settings_from_dict(
        {"server": {"http": {"host": "0.0.0.0", "cors_origins": [APP]}}}
    ).server.http
    assert APP in transport_security(public).allowed_origins


@pytest.mark.parametrize(
    ("origin", "problem"),
    [
        ("*", "list each web origin"),
        ("app.example.com", "scheme://host[:port]"),
        ("ftp://app.example.com", "scheme://host[:port]"),
        ("https://app.example.com/", "no path"),
        ("https://app.example.com/ui", "no path"),
        ("https://app.example.com?x=1", "no path"),
        ("https://alice:hunter2@app.example.com", "no credentials"),
        ("https://app.example.com:99999", "scheme://host[:port]"),
    ],
)
def test_an_origin_that_is_not_one_is_refused(origin: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        settings_from_dict({"server": {"http": {"cors_origins": [origin]}}})
    message = str(error.value)
    assert "server.http.cors_origins" in message
    assert problem in message
    assert "hunter2" not in message


async def test_listed_origins_get_cors_headers_on_the_endpoint_and_images(
    start_server: StartServer,
) -> None:
    server = start_server(
        config={
            "server.http": {"cors_origins": [APP, DEV], "stateless": False},
            "server.auth": {"mode": "bearer"},
        },
        env={"MCP_IMAGEGEN_SERVER__AUTH__TOKENS": TOKEN},
    )
    dev = "http://localhost:5173"
    async with httpx.AsyncClient() as client:
        allowed = await client.options(server.url, headers=preflight(APP))
        pattern = await client.options(server.url, headers=preflight(dev))
        # Chrome's Private Network Access: a listed origin may reach a server
        # on a private address (listing it is the operator's consent).
        private = await client.options(
            server.url,
            headers={
                **preflight(APP),
                "Access-Control-Request-Private-Network": "true",
            },
        )
        other = await client.options(
            server.url, headers=preflight("https://evil.example.com")
        )
        # The token is checked after the preflight: a 401 still carries CORS
        # headers, so the page can read the status and WWW-Authenticate.
        anonymous = await client.post(
            server.url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Origin": APP},
        )
        initialized = await client.post(
            server.url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Origin": APP, "Authorization": f"Bearer {TOKEN}"},
        )
        image = await client.head(
            server.base + "/images/20260101T000000000-0123456789ab",
            headers={"Origin": APP},
        )
        health = await client.get(server.base + "/healthz", headers={"Origin": APP})

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == APP
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "DELETE" in allowed.headers["access-control-allow-methods"]
    requested = preflight(APP)["Access-Control-Request-Headers"]
    assert allowed.headers["access-control-allow-headers"] == requested
    assert "access-control-allow-credentials" not in allowed.headers
    assert pattern.headers["access-control-allow-origin"] == dev
    assert private.status_code == 200
    assert private.headers["access-control-allow-private-network"] == "true"
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers

    assert anonymous.status_code == 401
    assert anonymous.headers["access-control-allow-origin"] == APP
    exposed = anonymous.headers["access-control-expose-headers"].lower()
    assert "www-authenticate" in exposed
    assert initialized.status_code == 200
    assert initialized.headers["access-control-allow-origin"] == APP
    assert "mcp-session-id" in initialized.headers
    exposed = initialized.headers["access-control-expose-headers"].lower()
    assert "mcp-session-id" in exposed
    # Image links: signed, so an unsigned request is refused, but readably.
    assert image.status_code == 403  # no signature
    assert image.headers["access-control-allow-origin"] == APP
    # Other routes are not for pages: no CORS headers.
    assert health.status_code == 200
    assert "access-control-allow-origin" not in health.headers
    assert TOKEN not in server.log_text()


async def test_without_cors_origins_a_preflight_gets_no_cors_headers(
    start_server: StartServer,
) -> None:
    server = start_server()
    async with httpx.AsyncClient() as client:
        answer = await client.options(
            server.url, headers=preflight("http://localhost:5173")
        )
        posted = await client.post(
            server.url,
            json=INITIALIZE,
            headers={**MCP_HEADERS, "Origin": "http://localhost:5173"},
        )
    assert "access-control-allow-origin" not in answer.headers
    # The Origin check accepts loopback pages (a non-browser client may say so);
    # only a browser's CORS stops them, and nothing here tells it to allow.
    assert posted.status_code == 200
    assert "access-control-allow-origin" not in posted.headers
