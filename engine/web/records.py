"""The pages evidence links to (a context record, a pull answer's record, a table entry),
and the rules and deliveries pages."""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine.model import CONTEXT_KINDS
from engine.server.pulls import pull_to_dict
from engine.server.tables import MAX_KEY
from engine.store.base import RetryRefused
from engine.store.outbox import STATUSES
from engine.timeutil import format_ts, utcnow
from engine.web import routes as r
from engine.web.pages import PageError, page, read_form, redirect, render, safe_next

DELIVERY_PAGE = 100
log = logging.getLogger("incident_pilot")


def _digits(request: Request, name: str) -> str:
    raw = str(request.path_params[name])
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise PageError(400, f"That is not a valid {name}: a whole number is expected.")
    return raw


def pretty(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True)


@page
async def context_page(request: Request) -> Response:
    kind = str(request.path_params["kind"])
    if kind not in CONTEXT_KINDS:
        raise PageError(404, f"There is no kind of record called {kind!r}.")
    record_id = _digits(request, "id")
    record = await run_in_threadpool(request.app.state.ip.store.get_context, kind, record_id)
    if record is None:
        raise PageError(
            404, f"There is no {kind} record {record_id} (retention may have pruned it)."
        )
    fields = {"service": record.service, "ts": format_ts(record.ts), **record.fields}
    return render(
        request,
        "record.html",
        {
            "title": f"{kind[:-1]} {record_id}",
            "path": record.path,
            "api": f"/api/context/{kind}/{record_id}",
            "fields": [(k, pretty(v)) for k, v in fields.items()],
            "link": None,
        },
    )


@page
async def pull_record_page(request: Request) -> Response:
    pull_id, n = _digits(request, "id"), int(_digits(request, "n"))
    pull = await run_in_threadpool(request.app.state.ip.store.get_pull, pull_id)
    if pull is None:
        raise PageError(404, f"There is no pull {pull_id}.")
    whole = pull_to_dict(pull)
    records = whole["answer"]["records"]
    if n >= len(records):
        raise PageError(404, f"Pull {pull_id} has no record {n}.")
    meta = [
        (k, pretty(whole[k]))
        for k in ("source", "query", "start", "end", "step")
        if whole[k] is not None
    ]
    return render(
        request,
        "record.html",
        {
            "title": f"{pull.source} answer {pull_id}/{n}",
            "path": f"pulls/{pull_id}/{n}",
            "api": f"/api/pulls/{pull_id}/{n}",
            "fields": meta + [(k, pretty(v)) for k, v in records[n].items()],
            "link": pull.link,
        },
    )


@page
async def no_such_page(request: Request) -> Response:
    raise PageError(404, "There is no such page.")


@page
async def table_page(request: Request) -> Response:
    """One entry of a lookup table the rules join (evidence `tables/<table>/<key>`)."""
    name, key = str(request.path_params["table"]), str(request.path_params["key"])
    table = request.app.state.ip.ruleset.tables.get(name)
    if table is None:
        raise PageError(404, f"There is no table {name!r}.")
    if not key or len(key) > MAX_KEY:
        raise PageError(400, f"A table key is 1 to {MAX_KEY} characters.")
    entry = table.get(key)
    if entry is None:
        raise PageError(404, f"Table {name!r} has no entry {key!r} (a reload may have removed it).")
    found = entry.to_dict()
    return render(
        request,
        "record.html",
        {
            "title": f"{name} table: {key}",
            "path": found["path"],
            "api": f"/api/tables/{quote(name, safe='')}/{quote(key, safe='')}",
            "fields": [(k, pretty(v)) for k, v in found.items() if k != "path"],
            "link": None,
        },
    )


def _about(problem: str, rule: Any) -> bool:
    """Whether a reload problem (`file:line:col: rule.id: message`) concerns the rule."""
    return problem.startswith(f"{rule.file}:") or f": {rule.id}: " in problem


def _lint(state: Any, rule: Any) -> str:
    result = state.last_reload
    if result is None:
        return "ok (loaded at start)"
    errors = [p for p in result.errors if _about(p, rule)]
    warnings = [p for p in result.warnings if _about(p, rule)]
    if errors:
        return f"{len(errors)} errors at the last reload (the previous rules stay in use)"
    if warnings:
        return f"{len(warnings)} warnings"
    return "ok"


@page
async def rules_page(request: Request) -> Response:
    state = request.app.state.ip
    activity = request.app.state.web_activity
    result = state.last_reload
    rows = []
    for rule in state.ruleset.rules:
        rows.append(
            {
                "rule": rule,
                "counts": activity.counts(rule.id),
                "lint": _lint(state, rule),
                "problems": [
                    p
                    for p in ([*result.errors, *result.warnings] if result else [])
                    if _about(p, rule)
                ],
            }
        )
    return render(
        request,
        "rules.html",
        {
            "rows": rows,
            "reload": result,
            "problems_elsewhere": [
                p
                for p in ([*result.errors, *result.warnings] if result else [])
                if not any(_about(p, rule) for rule in state.ruleset.rules)
            ],
        },
    )


@page
async def deliveries_page(request: Request) -> Response:
    state = request.app.state.ip
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in STATUSES:
        raise PageError(400, f"status must be one of {', '.join(STATUSES)}.")
    incident = q.get("incident") or None
    sink = q.get("sink") or None
    for name, value in (("incident", incident), ("sink", sink)):
        if value is not None and (len(value) > 256 or "\x00" in value):
            raise PageError(400, f"{name} must be at most 256 characters.")
    before = q.get("before") or None
    if before is not None and not (before.isascii() and before.isdigit() and len(before) <= 19):
        raise PageError(400, "before must be a delivery id.")
    found = await run_in_threadpool(
        lambda: state.store.list_deliveries(
            statuses=[status] if status else STATUSES,
            incident=incident,
            sink=sink,
            before=int(before) if before else None,
            limit=DELIVERY_PAGE + 1,
        )
    )
    rows, more = found[:DELIVERY_PAGE], len(found) > DELIVERY_PAGE
    filters = {k: v for k, v in (("status", status), ("incident", incident), ("sink", sink)) if v}
    counts = await run_in_threadpool(lambda: state.store.stats().get("outbox") or {})
    return render(
        request,
        "deliveries.html",
        {
            "rows": rows,
            "filters": filters,
            "statuses": STATUSES,
            "counts": counts,
            "next_href": (
                f"{r.DELIVERIES_PATH}?{urlencode({**filters, 'before': rows[-1].id})}"
                if more
                else None
            ),
            "can_retry": True,
            "format_ts": format_ts,
        },
    )


@page(admin=True)
async def retry_page(request: Request) -> Response:
    """Re-send a dead letter (as `POST /api/deliveries/{id}/retry`), then back to where
    the form was."""
    state = request.app.state.ip
    delivery_id = int(_digits(request, "id"))
    form = await read_form(request)
    try:
        queued = await run_in_threadpool(
            lambda: state.store.retry_delivery(delivery_id, now=utcnow())
        )
    except RetryRefused as exc:
        raise PageError(409, f"Delivery {delivery_id} was not re-sent: {exc}.") from None
    if queued is None:
        raise PageError(404, f"There is no delivery {delivery_id}.")
    log.warning(
        "dead letter %d (%s of incident %s to sink %s) queued again by hand from the page",
        queued.id,
        queued.event,
        queued.incident_id,
        queued.sink,
        extra={"incident": queued.incident_id, "sink": queued.sink, "delivery": queued.id},
    )
    state.delivery.wake()
    return redirect(safe_next(form.get("back")))
