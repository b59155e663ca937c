"""Run examples/kserve-predictor/predictor.py bound to 127.0.0.1 only.

KServe's ModelServer binds all interfaces (it hard-codes ``0.0.0.0``, right for a
pod); tests must not expose a server, so uvicorn's config is pinned to loopback
before the predictor runs, exactly as a script (``__main__``), with every argument
passed through. Runs in the torch venv::

    .cache/diffusers-venv/bin/python tests/diffusers/serve_loopback.py \\
        --model_name tiny --model_id DIR --http_port PORT --enable_grpc false
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

import uvicorn

PREDICTOR = (
    Path(__file__).resolve().parents[2] / "examples/kserve-predictor/predictor.py"
)


def _bind_loopback_only() -> None:
    original = uvicorn.Config.__init__

    def init(self: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        kwargs["host"] = "127.0.0.1"
        original(self, *args, **kwargs)

    uvicorn.Config.__init__ = init  # type: ignore[method-assign]


if __name__ == "__main__":
    _bind_loopback_only()
    sys.argv[0] = str(PREDICTOR)
    runpy.run_path(str(PREDICTOR), run_name="__main__")
