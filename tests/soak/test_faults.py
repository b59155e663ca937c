"""Fault runs against real servers: KServe answering 500s, S3 going away.

KServe: the real test model server behind a loopback fault proxy
(:mod:`tests.soak.faultproxy`); healthy requests are interleaved with requests the
server answers with 500 (its own ``fault-500`` model, so what it does with the
connection afterwards is real). Every healthy request must succeed, every failed
one must say why. S3: a real SeaweedFS stopped and restarted in the middle of a
mixed workload; no acknowledged image may be lost.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import mcp
import pytest

from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings, settings_from_dict
from mcp_imagegen._plugins import PluginManager
from tests.kserve.support import KServeServer
from tests.s3.seaweed import TEST_BUCKET, SeaweedServer
from tests.soak.faultproxy import FaultProxy
from tests.soak.workload import Ledger, Workload, is_crash_text, result_text, verify

pytestmark = pytest.mark.anyio

#: Healthy (None) and failing requests, in order: 500s between healthy ones, and
#: one 503 that passes on retry.
KSERVE_SEQUENCE = [None, "500", None, None, "500", "500", None, "503*1", None, "500"]
KSERVE_SEQUENCE += [None, "500", None, None]


def kserve_settings(url: str) -> dict[str, Any]:
    return {
        "generation": {"backend": "flaky", "postprocess": []},
        "backends": {
            "flaky": {
                "type": "kserve",
                "url": url,
                "model": "sd-v1",
                "max_retries": 2,
                "retry_backoff": 0.02,
                "retry_backoff_max": 0.1,
            }
        },
    }


@pytest.mark.kserve
async def test_healthy_requests_between_500s_all_succeed(
    kserve_server: KServeServer,
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
) -> None:
    failures: list[str] = []
    async with FaultProxy("127.0.0.1", kserve_server.port) as proxy:
        settings = make_settings(kserve_settings(proxy.url))
        async with mcp.Client(create_server(settings, plugin_manager)) as client:
            for number, fault in enumerate(KSERVE_SEQUENCE):
                tag = f" fault={fault}" if fault else ""
                result = await client.call_tool(
                    "generate_image",
                    {"prompt": f"soak call {number}{tag}", "width": 64, "height": 64},
                )
                text = result_text(result)
                if is_crash_text(text):
                    failures.append(f"call {number} ({fault}): {text}")
                elif result.is_error != (fault == "500"):
                    failures.append(f"call {number} ({fault}): {text[:300]}")

    assert failures == [], "\n".join(failures)
    # Every injected 500 reached the model. A request whose connection broke
    # before any answer is retried (and may be counted again), so at least.
    assert proxy.actions["500"] >= KSERVE_SEQUENCE.count("500"), proxy.actions


# -- S3 outage ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """A server of this module's own, so stopping it leaves the shared one alone."""
    directory = tmp_path_factory.mktemp("seaweed-soak")
    with SeaweedServer(directory, buckets=(TEST_BUCKET,)) as server:
        yield server


@pytest.mark.s3
async def test_an_s3_outage_mid_run_loses_no_acknowledged_image(
    own_seaweed: SeaweedServer, plugin_manager: PluginManager
) -> None:
    table = own_seaweed.storage_table(
        prefix=f"soak-{uuid.uuid4().hex[:8]}/", max_attempts=2, connect_timeout="PT2S"
    )
    settings = make_s3_settings(table)
    ledger = Ledger(strict=False)
    async with mcp.Client(create_server(settings, plugin_manager)) as client:
        workload = Workload(client, ledger, seed=3)
        await workload.run(30, 4)
        await anyio.to_thread.run_sync(own_seaweed.stop)
        ledger.phase = "[outage] "
        try:
            await workload.run(12, 4)
        finally:
            await anyio.to_thread.run_sync(own_seaweed.start)
        ledger.phase = ""
        await workload.run(30, 4)
        await verify(client, ledger, attempts=3)

    report = json.dumps(ledger.summary(), indent=1)
    assert ledger.unexpected == [], report
    assert ledger.lost == [], report
    outage_errors = [kind for kind in ledger.errors if kind.startswith("[outage]")]
    assert outage_errors, f"the outage caused no error at all: {report}"


def make_s3_settings(table: dict[str, Any]) -> Settings:
    return settings_from_dict(
        {"storage": {"backend": "s3", "s3": table}, "generation": {"postprocess": []}}
    )
