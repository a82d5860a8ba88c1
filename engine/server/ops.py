"""Wires the operability pieces into an app: metrics, auth, limits, request logs, reload,
OpenAPI. `create_app` calls `install_ops` once; everything else lives in its own module."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from engine.server.auth import AuthMiddleware
from engine.server.limits import (
    ConcurrencyLimitMiddleware,
    HeaderLimitMiddleware,
    TimeoutMiddleware,
)
from engine.server.logs import RequestLogMiddleware
from engine.server.metrics import metrics_endpoint
from engine.server.openapi import openapi_endpoint
from engine.server.reload import post_reload
from engine.server.state import AppState


def install_ops(app: Starlette, state: AppState) -> None:
    """Add /metrics, /-/reload and /openapi.json, and the middleware enforcing the
    state's tokens and limits."""
    limits, auth = state.settings.limits, state.settings.auth
    app.router.routes.extend(
        [
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/-/reload", post_reload, methods=["POST"]),
            Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        ]
    )
    # add_middleware puts each one outside the previous:
    # log, concurrency, headers, auth, timeout, app.
    app.add_middleware(TimeoutMiddleware, seconds=limits.request_timeout)
    app.add_middleware(AuthMiddleware, tokens=state.tokens, metrics_auth=auth.metrics_auth)
    app.add_middleware(HeaderLimitMiddleware, max_bytes=limits.max_header_bytes)
    app.add_middleware(ConcurrencyLimitMiddleware, limit=limits.max_concurrent_requests)
    app.add_middleware(RequestLogMiddleware, on_done=state.metrics.request)
