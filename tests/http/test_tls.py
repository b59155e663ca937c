"""HTTPS served directly: ``server.http.tls_certfile`` and ``tls_keyfile``.

A test CA (trustme) issues a certificate for 127.0.0.1; a real ``serve
--transport http`` subprocess serves with it, and the SDK's client checks it
against the CA.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import anyio
import httpx
import pytest
import trustme

from mcp_imagegen._config import settings_from_dict
from mcp_imagegen.errors import ConfigurationError
from tests.http.conftest import StartServer, refused_before_binding, write_toml

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, Path]:
    """The CA, and a certificate chain and key for 127.0.0.1, as PEM files."""
    cert = ca.issue_cert("127.0.0.1")
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "chain", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for blob in cert.cert_chain_pems:
        blob.write_to_path(str(files["chain"]), append=True)
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


async def test_the_server_speaks_https_with_its_certificate(
    start_server: StartServer, tls_files: dict[str, Path]
) -> None:
    server = start_server(
        config={
            "server.http": {
                "tls_certfile": str(tls_files["chain"]),
                "tls_keyfile": str(tls_files["key"]),
            }
        },
        verify=ssl.create_default_context(cafile=tls_files["ca"]),
    )
    with anyio.fail_after(60):
        async with server.session() as session:
            result = await session.call_tool(
                "generate_image", {"prompt": "a padlock", "width": 64, "height": 64}
            )
    plain = server.base.replace("https://", "http://")
    async with httpx.AsyncClient(timeout=5) as client:  # the system CAs only
        with pytest.raises(httpx.TransportError):
            await client.get(plain + "/healthz")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.get(server.base + "/healthz")

    assert server.base.startswith("https://")
    assert not result.is_error
    assert '"scheme": "https"' in server.log_text()


def test_certificate_and_key_go_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="go together"):
        settings_from_dict({"server": {"http": {"tls_certfile": str(tmp_path)}}})


@pytest.mark.parametrize("problem", ["missing", "not pem", "wrong key", "encrypted"])
def test_a_bad_certificate_or_key_is_one_line_before_binding(
    problem: str,
    ca: trustme.CA,
    tls_files: dict[str, Path],
    tmp_path: Path,
    subprocess_env: dict[str, str],
) -> None:
    chain, key = tls_files["chain"], tls_files["key"]
    if problem == "missing":
        key = tmp_path / "no-such-key.pem"
    elif problem == "not pem":
        chain.write_text("not a certificate\n")
    elif problem == "wrong key":
        ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(key))
    else:
        from cryptography.hazmat.primitives import serialization

        private = serialization.load_pem_private_key(key.read_bytes(), None)
        key.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pass phrase"),
            )
        )
    config = write_toml(
        tmp_path / "tls.toml",
        {"server.http": {"tls_certfile": str(chain), "tls_keyfile": str(key)}},
    )
    line = refused_before_binding(subprocess_env, tmp_path, "--config", str(config))

    assert line.startswith("mcp-imagegen: configuration error: server.http.tls_")
