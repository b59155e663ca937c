"""Fixtures: the example diffusers predictor on CPU in a real KServe model server.

The torch venv (``.cache/diffusers-venv``, see ``install.sh``) is made by
``make test``; a bare ``pytest`` makes it on first use. In it, ``build_tiny.py``
builds a tiny random Stable Diffusion pipeline once (cached by the script's hash
under ``.cache/tiny-sd``) and ``serve_loopback.py`` runs
``examples/kserve-predictor/predictor.py`` on it, on a free 127.0.0.1 port, offline
(``HF_HUB_OFFLINE=1``). Only a venv that could not be created skips these tests,
with the reason; any later failure fails them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.diffusers.support import (
    SetupError,
    build_pipeline,
    ensure_venv,
    start_predictor,
    stop_predictor,
)
from tests.kserve.support import KServeServer


@pytest.fixture(scope="session")
def tiny_pipeline() -> Path:
    """Directory of the tiny random pipeline (built once, then reused)."""
    try:
        ensure_venv()
    except SetupError as exc:
        pytest.skip(str(exc))
    try:
        return build_pipeline()
    except SetupError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def predictor_server(
    tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KServeServer]:
    """predictor.py serving the tiny pipeline as model ``tiny-sd``."""
    log_path = tmp_path_factory.mktemp("diffusers") / "predictor.log"
    try:
        server = start_predictor(tiny_pipeline, log_path)
    except SetupError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        stop_predictor(server)
