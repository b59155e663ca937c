"""``[server.tasks]``: bounds checked by name, a store that cannot be had refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_imagegen import TaskStore, hookimpl
from mcp_imagegen._app import create_server
from mcp_imagegen._config import Settings, settings_from_dict
from mcp_imagegen._plugins import PluginManager
from mcp_imagegen.errors import ConfigurationError
from mcp_imagegen_file.storage import FileStorage
from tests.tasks.conftest import legacy_client


class _RecordlessStorage(FileStorage):
    """A file storage that keeps no task records (as a third-party one may)."""

    name = "recordless"

    def task_store(self) -> TaskStore | None:
        return None


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
    make_settings: Callable[..., Settings],
    plugin_manager: PluginManager,
    tmp_path: Path,
) -> None:
    class Plugin:
        @hookimpl
        def register_storages(self, register: Callable[[type[Any]], None]) -> None:
            register(_RecordlessStorage)

    plugin_manager.register(Plugin(), name="recordless")
    settings = make_settings(
        {
            "server": {"tasks": {"store": "storage"}},
            "storage": {
                "backend": "recordless",
                "recordless": {"directory": str(tmp_path / "images")},
            },
        }
    )
    server = create_server(settings, plugin_manager)
    # The server's lifespan fails to start; the in-memory client's task group
    # hands the error on in a group.
    with pytest.RaisesGroup(
        pytest.RaisesExc(ConfigurationError, match='server.tasks.store = "storage"')
    ):
        async with legacy_client(server):
            pass
