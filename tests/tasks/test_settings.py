"""``[server.tasks]``: bounds checked by name, a store that cannot be had refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mcp_imagegen._config import settings_from_dict
from mcp_imagegen._mcp.server import ImageGenServer
from mcp_imagegen.errors import ConfigurationError
from tests.tasks.conftest import legacy_client


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ttl", 5),
        ("ttl", 8 * 24 * 3600),
        ("sync_wait", -1),
        ("max_running", 0),
        ("max_queued", -1),
        ("poll_interval", 0.01),
        ("heartbeat_interval", 0),
        ("store", "disk"),
    ],
)
def test_out_of_range_settings_name_their_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"server.tasks.{key}"):
        settings_from_dict({"server": {"tasks": {key: value}}})


@pytest.mark.anyio
async def test_store_storage_on_a_storage_without_task_records_is_refused(
    make_server: Callable[..., ImageGenServer],
) -> None:
    server = make_server({"server": {"tasks": {"store": "storage"}}})
    # The server's lifespan fails to start; the in-memory client's task group
    # hands the error on in a group.
    with pytest.RaisesGroup(
        pytest.RaisesExc(ConfigurationError, match='server.tasks.store = "storage"')
    ):
        async with legacy_client(server):
            pass
