"""The HTTP API (Starlette). Every store call runs in a worker thread: the event loop
never waits on the disk. A 2xx answer is sent only after the store has committed."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.alerts import AlertLimits, PayloadError, parse_payload
from engine.delivery.api import delivery_routes, delivery_stats
from engine.ingest import ContextLimits, parse_batch
from engine.model import CONTEXT_KINDS
from engine.narrate import StdoutReporter
from engine.pipeline import AlertResult, Pipeline, PipelineSettings
from engine.rules.ruleset import RuleSet
from engine.serialize import context_to_dict, incident_summary, incident_to_dict
from engine.server.body import ClientError, media_type, parse_json_body, read_body
from engine.server.loki import loki_routes
from engine.server.settings import ServeSettings
from engine.store.base import Store
from engine.store.sqlite import SQLiteStore
from engine.timeutil import TimeFormatError, parse_ts, utcnow

log = logging.getLogger("incident_pilot")
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_LIST = 1000
T = TypeVar("T")
_context_writer: ThreadPoolExecutor | None = None


def _writer() -> ThreadPoolExecutor:
    global _context_writer
    if _context_writer is None:
        _context_writer = ThreadPoolExecutor(1, thread_name_prefix="incident-pilot-context")
    return _context_writer


async def run_context_write(state: AppState, fn: Callable[..., T], *args: Any) -> T:
    """Run a context write off the event loop. SQLite serialises writes under one lock, so
    one dedicated thread (asyncio's executor hop) does the job for less per request than
    anyio's worker-thread pool; other stores use the pool. Like anyio's `run_sync`, the
    call is shielded: a request timeout waits for the write to finish (acknowledged means
    committed) and then takes effect."""
    if not isinstance(state.store, SQLiteStore):
        return await run_in_threadpool(fn, *args)
    context = contextvars.copy_context()
    with anyio.CancelScope(shield=True):
        return await asyncio.get_running_loop().run_in_executor(_writer(), context.run, fn, *args)
    raise AssertionError("a shielded scope is never cancelled")  # for the type checker


# Which outcomes change an incident enough to be printed / delivered.
REPORTED = {"opened", "attached", "resolved"}


@dataclass
class AppState:
    settings: ServeSettings
    store: Store
    ruleset: RuleSet
    reporter: StdoutReporter | None = None
    started: float = field(default_factory=time.time)
    counters: Counter[str] = field(default_factory=Counter)
    listeners: list[Callable[[AlertResult], None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.pipeline = Pipeline(
            self.store,
            lambda: self.ruleset,
            PipelineSettings(renotify_after=self.settings.renotify_after),
        )
        self.alert_limits = AlertLimits(max_future=self.settings.max_future)
        self.context_limits = ContextLimits(max_future=self.settings.max_future)

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] += n

    def handle_alert_sync(self, alert: Any) -> AlertResult:
        result = self.pipeline.handle(alert)
        self.count(f"alerts_{alert.status}")
        self.count(f"outcome_{result.outcome.kind}")
        incident = result.outcome.incident
        if self.reporter and incident is not None and result.outcome.kind in REPORTED:
            try:
                self.reporter.report(incident, result.outcome.kind)
            except Exception:  # printing must never lose an acknowledged alert
                log.exception("could not print incident %s", incident.id)
        for listener in self.listeners:
            try:
                listener(result)
            except Exception:
                log.exception("listener failed for alert %s", alert.fingerprint)
        return result


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
    try:
        alerts = parse_payload(body, now, state.alert_limits)
    except PayloadError as exc:
        raise ClientError(400, exc.message, exc.field) from None
    results = []
    for alert in alerts:
        result = await run_in_threadpool(state.handle_alert_sync, alert)
        incident = result.outcome.incident
        results.append(
            {
                "fingerprint": alert.fingerprint,
                "status": alert.status,
                "outcome": result.outcome.kind,
                "incident": incident.id if incident else None,
            }
        )
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
    stored = await run_context_write(state, state.store.add_context, records)
    state.count(f"context_{kind}", len(stored))
    return JSONResponse({"accepted": len(stored), "ids": [r.id for r in stored]})


def _query_time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_ts(raw)
    except TimeFormatError as exc:
        raise ClientError(400, str(exc), name) from None


async def list_incidents(request: Request) -> Response:
    state = _state(request)
    q = request.query_params
    try:
        limit = int(q.get("limit", "50"))
    except ValueError:
        raise ClientError(400, "limit must be a whole number", "limit") from None
    if not 1 <= limit <= MAX_LIST:
        raise ClientError(400, f"limit must be between 1 and {MAX_LIST}", "limit")
    status = q.get("status") or None
    if status not in (None, "open", "resolved"):
        raise ClientError(400, 'status must be "open" or "resolved"', "status")
    for name in ("service", "team"):
        value = q.get(name)
        if value is not None and (len(value) > 256 or "\x00" in value):
            raise ClientError(400, f"{name} must be at most 256 characters, without NUL", name)
    since = _query_time(request, "since")
    incidents = await run_in_threadpool(
        lambda: state.store.list_incidents(
            limit=limit,
            status=status,
            service=q.get("service") or None,
            team=q.get("team") or None,
            since=since,
        )
    )
    return JSONResponse(
        {"incidents": [incident_summary(i) for i in incidents], "count": len(incidents)}
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
        if state.reporter:
            await run_in_threadpool(state.reporter.report, outcome.incident, "resolved")
        for listener in state.listeners:
            try:
                listener(AlertResult(outcome.incident.alert, outcome))
            except Exception:
                log.exception("listener failed for resolve of %s", incident_id)
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
    stored = await run_in_threadpool(state.store.stats)
    with state.lock:
        counters = dict(state.counters)
    return JSONResponse(
        {
            "uptime_seconds": round(time.time() - state.started, 1),
            "rules_loaded": len(state.ruleset.enabled),
            "since_start": counters,
            **stored,
            **await delivery_stats(request),  # dead letters (engine.delivery)
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
    return error(exc.status_code, str(exc.detail))


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
        *delivery_routes(),  # /api/config, /api/deliveries (engine.delivery)
        *loki_routes(),  # POST /loki/api/v1/push (engine.server.loki)
    ]


def create_app(state: AppState) -> Starlette:
    app = Starlette(
        routes=routes(),
        exception_handlers={
            ClientError: _client_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.ip = state
    from engine.server.ops import install_ops  # metrics, auth, limits, logs, reload, OpenAPI

    install_ops(app, state)
    return app
