"""Baseline for bench/streamable_http.py: the bare tool over streamable HTTP.

``python bench/bare_http_server.py PORT`` serves bench/bare_server.py's tool
(set ``BARE_RENDER=1`` to draw a placeholder image per call) as the SDK's
stateless streamable HTTP app under uvicorn on 127.0.0.1, configured as
``mcp-imagegen serve --transport http`` runs it (lifespan on, no access log, no
server header), plus a ``/healthz`` route so the benchmark knows it is up.
"""

from __future__ import annotations

import sys

import uvicorn
from bare_server import server
from starlette.requests import Request
from starlette.responses import JSONResponse


@server.custom_route("/healthz", methods=["GET"])
async def healthz(request: Request) -> JSONResponse:
    """200 while the process serves."""
    return JSONResponse({"status": "ok"})


def main() -> None:
    """Serve on ``127.0.0.1:PORT`` until SIGTERM."""
    port = int(sys.argv[1])
    app = server.streamable_http_app(stateless_http=True)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
