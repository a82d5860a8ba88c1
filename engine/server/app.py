"""The HTTP API (Starlette). Every store call runs in a worker thread: the event loop
never waits on the disk. A 2xx answer is sent only after the store has committed."""

from __future__ import annotations

import logging
import re
import time
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Lifespan

from engine.alerts import PayloadError, Truncation, parse_payload
from engine.delivery.api import delivery_routes, delivery_stats
from engine.ingest import parse_batch
from engine.model import CONTEXT_KINDS
from engine.pipeline import AlertResult
from engine.serialize import context_to_dict, incident_summary, incident_to_dict
from engine.server.body import ClientError, media_type, parse_json_body, read_body
from engine.server.faults import readyz, store_unavailable
from engine.server.hooks import hook_routes
from engine.server.incident_query import page_of, parse_incident_query
from engine.server.loki import loki_routes
from engine.server.ops import install_ops
from engine.server.otlp import otlp_routes
from engine.server.pulls import pull_routes
from engine.server.state import AppState
from engine.server.tables import table_routes
from engine.store.errors import StoreUnavailable
from engine.timeutil import utcnow
from engine.web.install import install_pages

log = logging.getLogger("incident_pilot")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
T = TypeVar("T")


def _state(request: Request) -> AppState:
    return request.app.state.ip  # type: ignore[no-any-return]


def error(status: int, message: str, field: str = "") -> JSONResponse:
    body = {"error": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def _incident_id(request: Request) -> str:
    incident_id = request.path_params["id"]
    if not _ID.match(incident_id):
        raise ClientError(
            400, "invalid incident id: letters, digits, '.', '_' and '-' only, 1-64 long", "id"
        )
    return str(incident_id)


async def post_alerts(request: Request) -> Response:
    state = _state(request)
    raw = await read_body(
        request, state.settings.limits.body_limit("alerts", state.settings.max_body)
    )
    body = parse_json_body(raw, media_type(request), allow_ndjson=False)
    now = utcnow()
    cuts: list[Truncation] = []
    try:
        alerts = parse_payload(body, now, state.alert_limits, cuts)
    except PayloadError as exc:
        raise ClientError(400, exc.message, exc.field) from None
    if cuts:
        state.faults.truncated(cuts)
    results = []
    envelope = state.pull_envelope()  # the alerts of one request share pull answers
    batch = max(1, state.alert_limits.max_alerts)  # any count, in batches of --max-alerts
    for start in range(0, len(alerts), batch):
        done = await run_in_threadpool(state.handle_alerts_sync, alerts[start : start + batch])
        for result in done:
            state.submit_pulls(envelope, result)  # after the commit, in the background
            incident = result.outcome.incident
            results.append(
                {
                    "fingerprint": result.alert.fingerprint,
                    "status": result.alert.status,
                    "outcome": result.outcome.kind,
                    "incident": incident.id if incident else None,
                }
            )
    state.faults.recheck()
    return JSONResponse({"received": len(alerts), "results": results})


async def post_context(request: Request) -> Response:
    state = _state(request)
    kind = request.path_params["kind"]
    if kind not in CONTEXT_KINDS:
        raise ClientError(
            404, f"unknown context kind {kind!r}: use one of {', '.join(CONTEXT_KINDS)}"
        )
    raw = await read_body(
        request, state.settings.limits.body_limit("context", state.settings.max_body)
    )
    body = parse_json_body(raw, media_type(request), allow_ndjson=True)
    try:
        records = parse_batch(kind, body, utcnow(), state.context_limits)
    except PayloadError as exc:
        raise ClientError(400, exc.message, exc.field) from None
    stored = await state.run_context_write(state.store.add_context, records)
    state.faults.recheck()
    state.count(f"context_{kind}", len(stored))
    return JSONResponse({"accepted": len(stored), "ids": [r.id for r in stored]})


async def list_incidents(request: Request) -> Response:
    state = _state(request)
    query = parse_incident_query(request.query_params)
    found = await run_in_threadpool(query.fetch, state.store)
    incidents, next_cursor = page_of(found, query)
    return JSONResponse(
        {
            "incidents": [incident_summary(i) for i in incidents],
            "count": len(incidents),
            "next_cursor": next_cursor,
        }
    )


async def get_incident(request: Request) -> Response:
    state = _state(request)
    incident_id = _incident_id(request)
    incident = await run_in_threadpool(state.store.get_incident, incident_id)
    if incident is None:
        raise ClientError(404, f"no incident {incident_id}", "id")
    return JSONResponse(incident_to_dict(incident))


async def resolve_incident(request: Request) -> Response:
    state = _state(request)
    incident_id = _incident_id(request)
    raw = await read_body(request, 64 * 1024)
    note = None
    if raw.strip():
        body = parse_json_body(raw, media_type(request), allow_ndjson=False)
        if not isinstance(body, dict):
            raise ClientError(400, 'body must be a JSON object such as {"note": "..."}')
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > 4096 or "\x00" in note):
            raise ClientError(400, "note must be a string of at most 4096 characters", "note")
    outcome = await run_in_threadpool(
        lambda: state.store.resolve_incident(
            incident_id, at=utcnow(), note=note, auto=False, plan=state.pipeline.plan
        )
    )
    if outcome.incident is None:
        raise ClientError(404, f"no incident {incident_id}", "id")
    if outcome.kind == "resolved":
        state.count("outcome_resolved_by_hand")
        state.notify(AlertResult(outcome.incident.alert, outcome))
    return JSONResponse(
        {"resolved": outcome.kind == "resolved", "incident": incident_to_dict(outcome.incident)}
    )


async def get_context(request: Request) -> Response:
    state = _state(request)
    kind, record_id = request.path_params["kind"], request.path_params["id"]
    if kind not in CONTEXT_KINDS:
        raise ClientError(
            404, f"unknown context kind {kind!r}: use one of {', '.join(CONTEXT_KINDS)}"
        )
    if not (record_id.isascii() and record_id.isdigit()) or len(record_id) > 19:
        raise ClientError(400, "invalid record id: a positive whole number", "id")
    record = await run_in_threadpool(state.store.get_context, kind, record_id)
    if record is None:
        raise ClientError(
            404, f"no {kind} record {record_id} (it may have been pruned by retention)", "id"
        )
    return JSONResponse(context_to_dict(record))


async def get_stats(request: Request) -> Response:
    state = _state(request)

    def read() -> dict[str, Any]:  # one trip to a worker thread: both are small reads
        return {**state.store.stats(), **delivery_stats(state.store)}  # dead letters

    stored = await run_in_threadpool(read)
    counters = state.counters.snapshot()
    return JSONResponse(
        {
            "uptime_seconds": round(time.time() - state.started, 1),
            "rules_loaded": len(state.ruleset.enabled),
            "since_start": counters,
            **stored,
        }
    )


async def get_rules(request: Request) -> Response:
    state = _state(request)
    return JSONResponse(
        {
            "rules": [
                {
                    "id": r.id,
                    "enabled": r.enabled,
                    "source": r.source,
                    "file": r.file,
                    "description": r.description,
                }
                for r in state.ruleset.rules
            ]
        }
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    return JSONResponse(exc.to_dict(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = error(exc.status_code, str(exc.detail))
    response.headers.update(exc.headers or {})  # e.g. Allow on a 405
    return response


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error(500, "internal error; the server log has the details")


def routes() -> list[Route]:
    return [
        Route("/alerts", post_alerts, methods=["POST"]),
        Route("/context/{kind}", post_context, methods=["POST"]),
        Route("/api/incidents", list_incidents, methods=["GET"]),
        Route("/api/incidents/{id}", get_incident, methods=["GET"]),
        Route("/api/incidents/{id}/resolve", resolve_incident, methods=["POST"]),
        Route("/api/context/{kind}/{id}", get_context, methods=["GET"]),
        Route("/api/stats", get_stats, methods=["GET"]),
        Route("/api/rules", get_rules, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),  # the store can commit (engine.server.faults)
        *delivery_routes(),  # /api/config, /api/deliveries (engine.delivery)
        *otlp_routes(),  # /v1/traces, /v1/logs (engine.server.otlp)
        *hook_routes(),  # /hooks/github, /hooks/gitlab, /hooks/argocd (engine.server.hooks)
        *loki_routes(),  # POST /loki/api/v1/push (engine.server.loki)
        *pull_routes(),  # /api/pulls/{id}, /api/pulls/{id}/{n} (engine.server.pulls)
        *table_routes(),  # /api/tables[/{table}[/{key}]] (engine.server.tables)
    ]


def create_app(state: AppState, *, lifespan: Lifespan[Starlette] | None = None) -> Starlette:
    """The app over a state from engine.server.state.build_state. `lifespan`: what runs
    around serving (`serve` starts and stops the background work there)."""
    app = Starlette(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={
            ClientError: _client_error,
            StoreUnavailable: store_unavailable,  # 503 + Retry-After (engine.server.faults)
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.ip = state
    install_ops(app, state)  # metrics, auth, limits, logs, reload, OpenAPI
    install_pages(app, state)  # the pages for people, under /ui (engine.web)
    return app
