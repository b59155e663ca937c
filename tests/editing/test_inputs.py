"""The pieces of image input that need no server: address and host checks, sizes."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import random
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_imagegen._config import InputsSettings, LimitsSettings, load_settings
from mcp_imagegen._service.editing import target_size
from mcp_imagegen._service.fetching import address_allowed, host_allowed, url_origin
from mcp_imagegen._service.inputs import InputReader, decode_base64
from mcp_imagegen.errors import ConfigurationError, ValidationError
from mcp_imagegen.models import Capabilities
from mcp_imagegen_file.storage import FileStorage, FileStorageSettings


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared (carrier-grade NAT)
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1%eth0",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::6810:85e5"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_allowed(address)


def test_allowed_networks_let_private_addresses_through() -> None:
    networks = [ipaddress.ip_network("10.1.2.0/24")]
    assert address_allowed("10.1.2.3", networks)
    assert not address_allowed("10.1.3.3", networks)


def test_host_patterns() -> None:
    allowed = ["images.example.com", "*.cdn.example.org"]
    assert host_allowed("IMAGES.example.com.", allowed)
    assert host_allowed("a.cdn.example.org", allowed)
    assert host_allowed("a.b.cdn.example.org", allowed)
    assert not host_allowed("cdn.example.org", allowed)
    assert not host_allowed("evilcdn.example.org", allowed)
    assert not host_allowed("images.example.com.evil.net", allowed)


def test_url_origin_drops_credentials_query_and_fragment() -> None:
    assert (
        url_origin("https://user:pa55@Images.example.com:8443/a/b.png?sig=x#frag")
        == "https://images.example.com:8443/a/b.png"
    )
    assert url_origin("http://[::1]:80/x") == "http://[::1]:80/x"


LIMITS = LimitsSettings()
CAPS = Capabilities()


@pytest.mark.parametrize(
    ("source", "width", "height", "expected"),
    [
        ((512, 384), None, None, (512, 384)),  # the input's own size
        ((500, 333), None, None, (496, 336)),  # rounded to multiples of 8
        ((4000, 3000), None, None, (2048, 1536)),  # scaled into max_side
        ((30, 20), None, None, (96, 64)),  # scaled up to min_side, shape kept
        ((4000, 40), None, None, (2048, 64)),  # as close as the limits allow
        ((1000, 500), 256, None, (256, 128)),  # a lone width keeps the shape
        ((1000, 500), None, 256, (512, 256)),
        ((1000, 500), 320, 320, (320, 320)),  # both given: as given
    ],
)
def test_target_size(
    source: tuple[int, int],
    width: int | None,
    height: int | None,
    expected: tuple[int, int],
) -> None:
    assert target_size(source, width, height, CAPS, LIMITS) == expected


def test_target_size_keeps_within_the_pixel_limit() -> None:
    limits = LimitsSettings(max_pixels=1024 * 1024)
    width, height = target_size((3000, 1999), None, None, CAPS, limits)
    assert width * height <= 1024 * 1024
    assert width % 8 == 0 and height % 8 == 0


def test_inputs_from_the_environment(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_INPUTS__ALLOWED_DIRS", "/srv/a,/srv/b")
    monkeypatch.setenv("MCP_IMAGEGEN_INPUTS__ALLOWED_HOSTS", "*.example.com")
    monkeypatch.setenv("MCP_IMAGEGEN_INPUTS__ALLOWED_NETWORKS", "10.1.2.0/24")

    inputs = load_settings().inputs

    assert inputs.allowed_dirs == [Path("/srv/a"), Path("/srv/b")]
    assert inputs.allowed_hosts == ["*.example.com"]
    assert inputs.allowed_networks == [ipaddress.ip_network("10.1.2.0/24")]
    assert inputs.allow_private_addresses is False


def test_a_bad_network_names_the_key(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_IMAGEGEN_INPUTS__ALLOWED_NETWORKS", "10.1.2.0/33")

    with pytest.raises(ConfigurationError, match=r"inputs\.allowed_networks"):
        load_settings()


def _strict_b64decode(text: str) -> bytes | None:
    """What a data URI's payload meant before it was decoded in steps."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode()),
        st.text(alphabet="AQUJDab01+/= \n\t\r=é", max_size=40),
    ),
    step=st.integers(min_value=1, max_value=12),
)
def test_base64_in_steps_is_strict_base64(text: str, step: int) -> None:
    # Decoded a few characters at a time (to let the event loop run between
    # steps), every payload means exactly what one strict decode makes of it.
    expected = _strict_b64decode(text)
    if expected is None:
        with pytest.raises(ValidationError, match="image: the data is not valid"):
            decode_base64(text, "image", 1 << 20, step)
    else:
        assert decode_base64(text, "image", 1 << 20, step) == expected


def test_a_large_wrapped_data_uri_decodes_exactly() -> None:
    # Several steps' worth, wrapped at 76 columns as MIME tools do.
    raw = random.Random(3).randbytes(3 * 1024 * 1024 + 2)
    encoded = base64.b64encode(raw).decode()
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    assert decode_base64(wrapped, "image", len(raw)) == raw
    with pytest.raises(ValidationError, match=r"more than inputs.max_bytes = 3145728"):
        decode_base64(wrapped, "image", 3 * 1024 * 1024)


@pytest.mark.anyio
async def test_large_data_uris_are_decoded_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Decoding holds the GIL: two threads at it decode no faster than one, and
    # each one more queues before the event loop. A spy at the standard
    # library's decoder notes which thread made each step, in order.
    reader = InputReader(
        InputsSettings(), FileStorage(FileStorageSettings(directory=tmp_path))
    )
    raws = [random.Random(n).randbytes(2 * 1024 * 1024) for n in range(4)]
    uris = ["data:image/png;base64," + base64.b64encode(raw).decode() for raw in raws]
    calls: list[int] = []
    real = base64.b64decode

    def b64decode(data: str | bytes, *args: Any, **kwargs: Any) -> bytes:
        calls.append(threading.get_ident())
        return real(data, *args, **kwargs)

    monkeypatch.setattr(base64, "b64decode", b64decode)
    results: dict[int, bytes] = {}

    async def read(index: int) -> None:
        results[index] = (await reader.read_data(uris[index], "image")).data

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads would interleave between any steps
    try:
        async with anyio.create_task_group() as group:
            for index in range(4):
                group.start_soon(read, index)
    finally:
        sys.setswitchinterval(interval)

    assert [results[index] for index in range(4)] == raws
    runs = [
        thread for n, thread in enumerate(calls) if n == 0 or calls[n - 1] != thread
    ]
    assert len(runs) == len(set(runs))  # each thread's steps in one run
    assert threading.get_ident() not in calls  # and never on the event loop
