"""Wires the operability pieces into an app: metrics, auth, limits, request logs, reload,
OpenAPI. `create_app` calls `install_ops` once; everything else lives in its own module."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import Route

from engine.server.auth import AuthMiddleware, AuthSettings, TokenSet, load_tokens
from engine.server.limits import HeaderLimitMiddleware, Limits, TimeoutMiddleware
from engine.server.logs import RequestLogMiddleware
from engine.server.metrics import Metrics, metrics_endpoint
from engine.server.openapi import openapi_endpoint
from engine.server.reload import post_reload

if TYPE_CHECKING:
    from engine.server.app import AppState

OPS_ROUTES = ("/metrics", "/-/reload", "/openapi.json")


def limits_of(state: AppState) -> Limits:
    limits = getattr(state.settings, "limits", None)
    return limits if isinstance(limits, Limits) else Limits()


def auth_of(state: AppState) -> AuthSettings:
    auth = getattr(state.settings, "auth", None)
    return auth if isinstance(auth, AuthSettings) else AuthSettings()


def install_ops(app: Starlette, state: AppState, tokens: TokenSet | None = None) -> Metrics:
    """Add /metrics, /-/reload and /openapi.json, the middleware, and the configured limits.
    `tokens` defaults to the configured ones (INCIDENT_PILOT_TOKENS, --tokens-file)."""
    limits = limits_of(state)
    auth = auth_of(state)
    if tokens is None:
        tokens = load_tokens(auth)
    state.alert_limits = limits.alert_limits(max_future=state.settings.max_future)
    state.context_limits = limits.context_limits(max_future=state.settings.max_future)

    metrics = Metrics(state)
    app.state.metrics = metrics
    app.state.tokens = tokens
    state.listeners.append(metrics.observe)

    existing = {getattr(r, "path", None) for r in app.router.routes}
    extra = [
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/-/reload", post_reload, methods=["POST"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    app.router.routes.extend(r for r in extra if r.path not in existing)

    # add_middleware puts each one outside the previous: log, headers, auth, timeout, app.
    app.add_middleware(TimeoutMiddleware, seconds=limits.request_timeout)
    app.add_middleware(AuthMiddleware, tokens=tokens, metrics_auth=auth.metrics_auth)
    app.add_middleware(HeaderLimitMiddleware, max_bytes=limits.max_header_bytes)
    app.add_middleware(RequestLogMiddleware, on_done=metrics.request)
    return metrics
