"""HTTP endpoints of delivery: GET /api/config and GET /api/deliveries?status=dead."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.delivery.outbox import UNCONFIRMED
from engine.delivery.service import DeliveryService
from engine.store.base import Delivery
from engine.timeutil import format_ts

MAX_LIST = 500


def _service(request: Request) -> DeliveryService:
    service: DeliveryService = request.app.state.ip.delivery  # engine.server.state.AppState
    return service


def delivery_summary(d: Delivery) -> dict[str, Any]:
    """A dead letter without its payload (the incident is at /api/incidents/{id})."""
    error = d.last_error or ""
    return {
        "id": d.id,
        "incident": d.incident_id,
        "sink": d.sink,
        "event": d.event,
        "status": d.status,
        "reason": UNCONFIRMED if error.startswith(UNCONFIRMED) else "failed",
        "attempts": d.attempts,
        "last_error": d.last_error,
        "created_at": format_ts(d.created_at),
        "last_attempt_due": format_ts(d.next_attempt_at),
    }


async def get_config(request: Request) -> Response:
    return JSONResponse(_service(request).effective_config())


async def list_deliveries(request: Request) -> Response:
    status = request.query_params.get("status", "dead")
    if status != "dead":
        return JSONResponse(
            {"error": 'status must be "dead" (the dead-letter list)', "field": "status"}, 400
        )
    try:
        limit = int(request.query_params.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST:
        return JSONResponse(
            {"error": f"limit must be a whole number from 1 to {MAX_LIST}", "field": "limit"}, 400
        )
    store = request.app.state.ip.store
    dead = await run_in_threadpool(store.dead_deliveries, limit)
    return JSONResponse({"deliveries": [delivery_summary(d) for d in dead], "count": len(dead)})


async def delivery_stats(request: Request) -> dict[str, Any]:
    """The `dead_letters` part of /api/stats: the newest few (the count is in `outbox`)."""
    dead = await run_in_threadpool(request.app.state.ip.store.dead_deliveries, 5)
    return {"dead_letters": [delivery_summary(d) for d in dead]}


def delivery_routes() -> list[Route]:
    return [
        Route("/api/config", get_config, methods=["GET"]),
        Route("/api/deliveries", list_deliveries, methods=["GET"]),
    ]
