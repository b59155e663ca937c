"""Fetching input images from http(s) URLs, against SSRF.

A URL is fetched by hand, hop by hop: every redirect is checked like the first
URL, each host name is resolved once and the connection goes to that checked
address (a second lookup could be answered differently: DNS rebinding), and
addresses that are not globally routable (loopback, private, link-local such as
cloud metadata, reserved) are refused unless ``inputs.allow_private_addresses``.
Downloads are streamed and stopped at ``inputs.max_bytes``; the whole fetch is
bounded by ``inputs.fetch_timeout``.

Errors never echo a URL's credentials or query: they show :func:`url_origin`,
the URL without either.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import anyio
import certifi

from mcp_imagegen.errors import ConfigurationError, ValidationError

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from mcp_imagegen._config import InputsSettings

#: How much of a download is read at a time.
_CHUNK = 64 * 1024


def tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The TLS context of https fetches: the public CAs, plus ``ca_bundle``'s.

    Raises:
        ConfigurationError: when ``ca_bundle`` is not a readable PEM file.
    """
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc.reason
            raise ConfigurationError(
                f"inputs.ca_bundle: cannot load {ca_bundle} ({reason}); give a "
                "PEM file of CA certificates."
            ) from None
    return context


def url_origin(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: no credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def address_allowed(
    address: str,
    networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> bool:
    """True for a globally routable unicast address, or one in ``networks``.

    An IPv4-mapped IPv6 address is judged as the IPv4 address it holds.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in networks):
        return True
    return ip.is_global and not ip.is_multicast


def host_allowed(host: str, allowed: list[str]) -> bool:
    """True when ``host`` is listed, or under a listed ``*.domain``."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


class UrlFetcher:
    """Downloads input images from the hosts ``inputs.allowed_hosts`` names.

    Args:
        settings: The ``[inputs]`` section.

    Raises:
        ConfigurationError: when ``inputs.ca_bundle`` cannot be loaded.
    """

    def __init__(self, settings: InputsSettings) -> None:
        self.settings = settings
        # Built once, and only when URLs may be fetched (or a ca_bundle is
        # given): loading CA certificates is costly at every start, and a bad
        # ca_bundle should stop the start, not fail the first https fetch.
        self._tls = (
            tls_context(settings.ca_bundle)
            if settings.allowed_hosts or settings.ca_bundle is not None
            else None
        )

    async def fetch(self, url: str, argument: str) -> tuple[bytes, str]:
        """Download an image from an allowed host (see the module docstring).

        Returns:
            The bytes, and the :func:`url_origin` of the URL that sent them
            (the last one, after redirects).

        Raises:
            ValidationError: for a host not allowed, a refused address, a
                redirect loop, an HTTP error, a download over
                ``inputs.max_bytes`` or slower than ``inputs.fetch_timeout``.
        """
        settings = self.settings
        self._check_url(url, argument)  # a clear error before any network work
        # Imported here: URL sources are off by default, and httpx costs ~20 ms
        # of every start-up otherwise.
        import httpx

        seconds = settings.fetch_timeout.total_seconds()
        try:
            with anyio.fail_after(seconds):
                async with httpx.AsyncClient(
                    # (None only when fetching is off: _check_url refused.)
                    verify=self._tls or tls_context(None),
                    follow_redirects=False,
                    # No proxies from the environment: the checked address must
                    # be the one connected to.
                    trust_env=False,
                    timeout=httpx.Timeout(seconds),
                ) as client:
                    return await self._follow(client, url, argument)
        except TimeoutError:
            raise ValidationError(
                f"{argument}: fetching {url_origin(url)} took longer than "
                f"inputs.fetch_timeout ({seconds:g} s)."
            ) from None
        except httpx.HTTPError as exc:
            # httpx messages may repeat the URL: only the error's type goes out.
            raise ValidationError(
                f"{argument}: fetching {url_origin(url)} failed ({type(exc).__name__})."
            ) from None

    async def _follow(
        self, client: httpx.AsyncClient, url: str, argument: str
    ) -> tuple[bytes, str]:
        current = url
        for _ in range(self.settings.max_redirects + 1):
            request = await self._request_for(client, current, argument)
            response = await client.send(request, stream=True)
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise ValidationError(
                            f"{argument}: {url_origin(current)} redirected "
                            "without a Location."
                        )
                    current = urljoin(current, location)
                    continue
                if response.status_code != 200:
                    raise ValidationError(
                        f"{argument}: {url_origin(current)} answered HTTP "
                        f"{response.status_code}."
                    )
                data = await self._read_body(response, current, argument)
                return data, url_origin(current)
            finally:
                await response.aclose()
        raise ValidationError(
            f"{argument}: {url_origin(url)} redirected more than "
            f"inputs.max_redirects = {self.settings.max_redirects} times."
        )

    def _check_url(self, url: str, argument: str) -> tuple[str, str, int]:
        """The URL's scheme, host and port, once its scheme and host are allowed."""
        shown = url_origin(url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(
                f"{argument}: {shown} is not an http(s) URL with a host."
            )
        if not self.settings.allowed_hosts:
            raise ValidationError(
                f"{argument}: fetching URLs is off; set inputs.allowed_hosts to "
                "the hosts images may be fetched from, or send the image as a "
                "data: URI."
            )
        if not host_allowed(parts.hostname, self.settings.allowed_hosts):
            raise ValidationError(
                f"{argument}: host '{parts.hostname}' of {shown} is not in "
                "inputs.allowed_hosts."
            )
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise ValidationError(f"{argument}: {shown} has an invalid port.") from None
        return parts.scheme, parts.hostname, port

    async def _request_for(
        self, client: httpx.AsyncClient, url: str, argument: str
    ) -> httpx.Request:
        """A request for ``url`` sent to the address its host was checked to have."""
        scheme, host, port = self._check_url(url, argument)
        address = await self._resolve(host, port, url, argument)
        import httpx

        target = httpx.URL(url).copy_with(host=address)
        extensions = {"sni_hostname": host} if scheme == "https" else {}
        # Host keeps the name (virtual hosts); TLS checks the certificate
        # against the name too (sni_hostname), not the address.
        host_header = host if ":" not in host else f"[{host}]"
        if urlsplit(url).port:
            host_header += f":{port}"
        return client.build_request(
            "GET",
            target,
            headers={"Host": host_header, "Accept": "image/*"},
            extensions=extensions,
        )

    async def _resolve(self, host: str, port: int, url: str, argument: str) -> str:
        """One address of ``host``, every one of them checked."""
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise ValidationError(
                f"{argument}: the host of {url_origin(url)} cannot be resolved."
            ) from None
        addresses = [str(info[4][0]) for info in infos]
        if not addresses:
            raise ValidationError(
                f"{argument}: the host of {url_origin(url)} has no address."
            )
        if not self.settings.allow_private_addresses:
            for address in addresses:
                if not address_allowed(address, self.settings.allowed_networks):
                    raise ValidationError(
                        f"{argument}: {url_origin(url)} resolves to {address}, a "
                        "loopback, private, link-local or reserved address; such "
                        "addresses are refused unless inputs.allowed_networks "
                        "holds it or inputs.allow_private_addresses is set."
                    )
        return addresses[0]

    async def _read_body(
        self, response: httpx.Response, url: str, argument: str
    ) -> bytes:
        limit = self.settings.max_bytes
        too_large = ValidationError(
            f"{argument}: {url_origin(url)} sends more than "
            f"inputs.max_bytes = {limit} bytes."
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large  # stop reading: an endless body ends here
            chunks.append(chunk)
        return b"".join(chunks)
