"""A mixed concurrent workload over the in-memory MCP client (bounded soak).

Placeholder backend, file storage: generate/list/get/delete/transform race each
other on one client. No acknowledged image may be lost, ``list_images`` may never
fail while deletes race it, and no result may hide a crash as "internal error".
"""

from __future__ import annotations

import json
from collections.abc import Callable

import mcp
import pytest

from tests.soak.workload import Ledger, Workload, verify

pytestmark = pytest.mark.anyio

CALLS = 200
CONCURRENCY = 8


async def test_mixed_workload_loses_nothing_and_never_crashes(
    connect: Callable[..., mcp.Client],
) -> None:
    ledger = Ledger(strict=True)
    async with connect() as client:
        await Workload(client, ledger, seed=8).run(CALLS, CONCURRENCY)
        await verify(client, ledger)

    report = json.dumps(ledger.summary(), indent=1)
    assert sum(ledger.calls.values()) >= CALLS, report
    assert ledger.acknowledged > 0 and ledger.calls["delete_image"] > 0, report
    assert ledger.calls["list_images"] > 0, report
    assert ledger.unexpected == [], report
    assert ledger.lost == [], report
