"""HTTP endpoints of delivery: GET /api/config, GET /api/deliveries (any status, by
incident and sink) and POST /api/deliveries/{id}/retry (re-send a dead letter)."""

from __future__ import annotations

import logging
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.delivery.outbox import UNCONFIRMED
from engine.delivery.service import DeliveryService
from engine.store.base import Delivery, RetryRefused, Store
from engine.store.outbox import STATUSES
from engine.timeutil import format_ts, utcnow

log = logging.getLogger("incident_pilot.delivery")
MAX_LIST = 500
MAX_ID = 2**63 - 1  # a delivery id is a signed 64-bit integer on both backends
_ID = re.compile(r"[0-9]{1,19}")
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def _service(request: Request) -> DeliveryService:
    service: DeliveryService = request.app.state.ip.delivery  # engine.server.state.AppState
    return service


def delivery_summary(d: Delivery) -> dict[str, Any]:
    """A delivery without its payload (the incident is at /api/incidents/{id})."""
    error = d.last_error or ""
    reason = None
    if d.status == "dead":
        reason = UNCONFIRMED if error.startswith(UNCONFIRMED) else "failed"
    return {
        "id": d.id,
        "incident": d.incident_id,
        "sink": d.sink,
        "event": d.event,
        "status": d.status,
        "reason": reason,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": format_ts(d.created_at),
        "next_attempt_at": format_ts(d.next_attempt_at),
        "last_attempt_due": format_ts(d.next_attempt_at),  # the older name of the same
    }


def _bad(message: str, field: str) -> Response:
    return JSONResponse({"error": message, "field": field}, 400)


async def get_config(request: Request) -> Response:
    return JSONResponse(_service(request).effective_config())


def _statuses(text: str) -> list[str] | None:
    """`dead`, `pending,sending`, or `all`; None when a word is not a status."""
    if text == "all":
        return list(STATUSES)
    words = [w.strip() for w in text.split(",")]
    return words if words and all(w in STATUSES for w in words) else None


async def list_deliveries(request: Request) -> Response:
    query = request.query_params
    statuses = _statuses(query.get("status", "dead"))
    if statuses is None:
        choices = ", ".join(STATUSES)
        return _bad(f"status must be one of {choices}, a comma-separated list, or all", "status")
    try:
        limit = int(query.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST:
        return _bad(f"limit must be a whole number from 1 to {MAX_LIST}", "limit")
    filters: dict[str, Any] = {}
    for field, key in (("incident", "incident"), ("sink", "sink")):
        value = query.get(field)
        if value is not None:
            if not _NAME.fullmatch(value):
                return _bad(f"{field} must be 1 to 128 of A-Z a-z 0-9 _ . : -", field)
            filters[key] = value
    before = query.get("before")
    if before is not None:
        if not _ID.fullmatch(before) or int(before) > MAX_ID:
            return _bad("before must be a delivery id (a whole number)", "before")
        filters["before"] = int(before)
    store = request.app.state.ip.store
    found = await run_in_threadpool(
        lambda: store.list_deliveries(statuses=statuses, limit=limit, **filters)
    )
    return JSONResponse({"deliveries": [delivery_summary(d) for d in found], "count": len(found)})


def _delivery_id(request: Request) -> int | None:
    raw = request.path_params["id"]
    if not _ID.fullmatch(raw) or int(raw) > MAX_ID:
        return None
    return int(raw)


async def retry_delivery(request: Request) -> Response:
    """Re-send a dead letter: 200 with the delivery queued again, 404, or 409."""
    delivery_id = _delivery_id(request)
    if delivery_id is None:
        return JSONResponse({"error": "no such delivery"}, 404)
    store = request.app.state.ip.store
    try:
        queued = await run_in_threadpool(lambda: store.retry_delivery(delivery_id, now=utcnow()))
    except RetryRefused as exc:
        return JSONResponse({"error": str(exc), "delivery": delivery_id}, 409)
    if queued is None:
        return JSONResponse({"error": "no such delivery"}, 404)
    log.warning(
        "dead letter %d (%s of incident %s to sink %s) queued again by hand",
        queued.id,
        queued.event,
        queued.incident_id,
        queued.sink,
        extra={"incident": queued.incident_id, "sink": queued.sink, "delivery": queued.id},
    )
    _service(request).wake()
    return JSONResponse(delivery_summary(queued))


def delivery_stats(store: Store) -> dict[str, Any]:
    """The `dead_letters` part of /api/stats: the newest few (the count is in `outbox`)."""
    return {"dead_letters": [delivery_summary(d) for d in store.dead_deliveries(5)]}


def delivery_routes() -> list[Route]:
    return [
        Route("/api/config", get_config, methods=["GET"]),
        Route("/api/deliveries", list_deliveries, methods=["GET"]),
        Route("/api/deliveries/{id}/retry", retry_delivery, methods=["POST"]),
    ]
