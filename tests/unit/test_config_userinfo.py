"""Configuration errors never echo credentials embedded in URLs."""

from __future__ import annotations

import pytest

from mcp_imagegen._config import settings_from_dict
from mcp_imagegen.errors import ConfigurationError


def test_invalid_value_with_url_credentials_is_echoed_without_them() -> None:
    with pytest.raises(ConfigurationError) as caught:
        settings_from_dict(
            {"limits": {"max_side": "https://bob:hunter2@example.com/x"}}
        )

    message = str(caught.value)
    assert "limits.max_side" in message
    assert "hunter2" not in message and "bob" not in message
    assert "https://**********@example.com/x" in message
