"""`POST /loki/api/v1/push`: Promtail, Grafana Alloy (`loki.write`), Vector's `loki` sink and
Loki clients push here unchanged. The body becomes `logs` context records
(engine/adapters/loki.py), the volume filter drops what rules never use, and the rest is
stored the way `POST /context/logs` stores it. Answers as Loki does: 204 with no body, or
a plain-text error (400, 413, 415; 503 with Retry-After when the store cannot commit).
A rejected request stores nothing."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from engine.adapters.loki import (
    UNKNOWN_SERVICE,
    LokiError,
    count_entries,
    decode_push,
    to_records,
)
from engine.server.body import ClientError, media_type, read_body
from engine.server.faults import RETRY_AFTER_SECONDS
from engine.store.errors import StoreUnavailable
from engine.timeutil import utcnow

if TYPE_CHECKING:
    from engine.server.state import AppState

log = logging.getLogger("incident_pilot.loki")
PATH = "/loki/api/v1/push"
SOURCE = "loki"
_warned_unknown = False


def _count(request: Request, outcome: str, n: int) -> None:
    if n:
        _state(request).metrics.ingest(SOURCE, outcome, n)


def _state(request: Request) -> AppState:
    return request.app.state.ip  # type: ignore[no-any-return]


def _reject(request: Request, status: int, message: str, entries: int = 0) -> Response:
    _count(request, "rejected", entries)
    return PlainTextResponse(message + "\n", status_code=status)


async def post_loki_push(request: Request) -> Response:
    global _warned_unknown
    state = _state(request)
    settings = state.settings
    limit = settings.limits.body_limit("context", settings.max_body)
    try:
        raw = await read_body(request, limit)
        streams = decode_push(
            raw, media_type(request), request.headers.get("content-encoding", ""), limit
        )
        records = to_records(
            streams,
            utcnow(),
            service_labels=settings.loki_service_labels,
            max_future=settings.max_future,
            max_entries=state.context_limits.max_records,
        )
    except ClientError as exc:  # from read_body: 413, or 400 for a bad Content-Length
        return _reject(request, exc.status, exc.message)
    except LokiError as exc:
        return _reject(request, exc.status, exc.message, exc.entries)
    keep: dict[str, bool] = {}  # level word -> kept: a push has a handful of levels
    kept = []
    for record in records:
        level = record.fields["level"]
        wanted = keep.get(level)
        if wanted is None:
            wanted = keep[level] = settings.volume.keep_log(level)
        if wanted:
            kept.append(record)
    if kept:
        try:
            await state.run_context_write(state.store.append_context, kept)
        except StoreUnavailable as exc:  # nothing stored: Loki clients retry a 5xx
            state.faults.failed("loki", exc)
            return PlainTextResponse(
                f"the store cannot commit right now ({exc.reason}); retry later\n",
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        state.faults.recheck()
        state.count("context_logs", len(kept))
        if not _warned_unknown and any(r.service == UNKNOWN_SERVICE for r in kept):
            _warned_unknown = True
            log.warning(
                "loki push: a stream has none of the labels %s; its lines are stored under "
                "service %r (set --loki-service-labels)",
                ", ".join(settings.loki_service_labels),
                UNKNOWN_SERVICE,
            )
    _count(request, "stored", len(kept))
    _count(request, "filtered", count_entries(streams) - len(kept))
    return Response(status_code=204)


def loki_routes() -> list[Route]:
    return [Route(PATH, post_loki_push, methods=["POST"])]
