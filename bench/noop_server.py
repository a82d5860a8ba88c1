"""The HTTP ceiling: a no-op Starlette endpoint under the same uvicorn settings as
`incident-pilot serve` (engine/server/run.py), so single-record ingest can be compared
with what the HTTP stack alone allows on this machine.

Run as `python -m bench.noop_server --port P`.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.server.connections import raise_fd_limit
from engine.server.limits import Limits


async def noop(request: Request) -> Response:
    await request.body()  # read the body, as the real endpoint does
    return JSONResponse({"accepted": 1, "ids": ["1"]})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/context/{kind}", noop, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same keyword arguments as engine.server.run.serve (log level "info", no access
    # log unless debug, 30 s graceful shutdown, the default connection limits).
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=30,
        **Limits().uvicorn_options(raise_fd_limit()),
    )


if __name__ == "__main__":
    main()
