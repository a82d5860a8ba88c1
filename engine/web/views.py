"""The incident pages: the list (filters, search, paging), one incident (alerts, findings,
evidence, timeline, deliveries) and resolving it with a note."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from engine.model import Finding, Incident, Severity
from engine.pipeline import AlertResult
from engine.server.body import ClientError
from engine.server.incident_query import page_of, parse_incident_query
from engine.store.outbox import STATUSES
from engine.timeutil import format_ts, utcnow
from engine.web import routes as r
from engine.web.pages import PageError, page, read_form, redirect, render
from engine.web.timeline import gather, legend, render_svg

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# The list's time filter: a choice of windows, sent as `window`, read as `since`.
WINDOWS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
FILTERS = ("status", "severity", "service", "team", "window", "q")
PAGE_SIZE = 50
_COMMAND = re.compile(r"`([^`\n]{2,400})`")
MAX_NOTE = 4096


def age(since: datetime, now: datetime) -> str:
    """How long ago, in the largest two units: `3m`, `2h 5m`, `4d 1h`."""
    seconds = max(0, int((now - since).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{secs}s"


def commands(suggestion: str) -> list[str]:
    """The commands a suggestion names (`in backticks`); else the whole suggestion."""
    found = _COMMAND.findall(suggestion)
    return found or ([suggestion.strip()] if suggestion.strip() else [])


def web_link(url: str) -> str | None:
    """An http(s) URL to link to, or None (a `javascript:` URL from an alert is not one)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def _incident_id(request: Request) -> str:
    incident_id = str(request.path_params["id"])
    if not _ID.match(incident_id):
        raise PageError(400, "That is not an incident id.")
    return incident_id


@page
async def incidents_page(request: Request) -> Response:
    state = request.app.state.ip
    params = {k: v for k, v in request.query_params.items() if v}
    window = params.pop("window", "")
    if window and window not in WINDOWS:
        raise ClientError(400, f"window must be one of {', '.join(WINDOWS)}", "window")
    now = utcnow()
    if window:
        params["since"] = format_ts(now - WINDOWS[window])
    query = parse_incident_query(params, default_limit=PAGE_SIZE)
    found = await run_in_threadpool(query.fetch, state.store)
    incidents, cursor = page_of(found, query)
    kept = {k: v for k, v in request.query_params.items() if v and k in FILTERS}
    rows = [
        {
            "incident": i,
            "href": r.incident_page_path(i.id),
            "age": age(i.opened_at, now),
            "alerts": 1 + i.attached_count,
        }
        for i in incidents
    ]
    return render(
        request,
        "incidents.html",
        {
            "rows": rows,
            "filters": kept,
            "severities": [s.word for s in Severity],
            "windows": list(WINDOWS),
            "next_href": f"{r.INCIDENTS_PATH}?{urlencode({**kept, 'cursor': cursor})}"
            if cursor
            else None,
            "first_href": f"{r.INCIDENTS_PATH}?{urlencode(kept)}" if query.before else None,
        },
    )


def _finding_view(finding: Finding) -> dict[str, Any]:
    return {
        "finding": finding,
        "commands": commands(finding.suggestion),
        "evidence": [
            {
                "path": e.path,
                "href": r.evidence_page_path(e.path) or _local_anchor(e.path),
                "snapshot": e.snapshot,
            }
            for e in finding.evidence
        ],
    }


def _local_anchor(path: str) -> str | None:
    """Evidence that is not a stored record: the alert's labels, a rule, an owner."""
    head = path.split("/", 1)[0]
    if head == "alert":
        return "#alerts"
    if head == "rules":
        return f"{r.RULES_PATH}#rule-{path.split('/', 1)[-1]}"
    if head == "ownership" and "/" in path:  # the ownership file is the table `ownership`
        return r.table_page_path("ownership", path.split("/", 1)[1])
    return None


def incident_context(state: Any, incident: Incident) -> dict[str, Any]:
    """Everything the incident page shows (synchronous: call from a worker thread)."""
    store = state.store
    timeline = gather(
        store, incident, state.ruleset, lambda rec: r.context_page_path(rec.kind, rec.id)
    )
    alert = incident.alert
    return {
        "incident": incident,
        "now": utcnow(),
        "alert": alert,
        "generator_url": web_link(alert.generator_url),
        "alerts": store.incident_alerts(incident.id),
        "findings": [_finding_view(f) for f in incident.findings],
        "timeline_svg": render_svg(timeline),
        "timeline": timeline,
        "legend": legend(timeline),
        "deliveries": store.list_deliveries(statuses=STATUSES, incident=incident.id, limit=100),
        "format_ts": format_ts,
        "age": age,
        "can_retry": True,
        "web_link": web_link,
    }


@page
async def incident_page(request: Request) -> Response:
    state = request.app.state.ip
    incident_id = _incident_id(request)
    incident = await run_in_threadpool(state.store.get_incident, incident_id)
    if incident is None:
        raise PageError(404, f"There is no incident {incident_id}.")
    context = await run_in_threadpool(incident_context, state, incident)
    return render(request, "incident.html", context)


@page(admin=True)
async def resolve_page(request: Request) -> Response:
    state = request.app.state.ip
    incident_id = _incident_id(request)
    form = await read_form(request)
    note = str(form.get("note") or "").strip() or None
    if note is not None and (len(note) > MAX_NOTE or "\x00" in note):
        raise PageError(400, f"The note must be at most {MAX_NOTE} characters.")
    outcome = await run_in_threadpool(
        lambda: state.store.resolve_incident(
            incident_id, at=utcnow(), note=note, auto=False, plan=state.pipeline.plan
        )
    )
    if outcome.incident is None:
        raise PageError(404, f"There is no incident {incident_id}.")
    if outcome.kind == "resolved":
        state.count("outcome_resolved_by_hand")
        state.notify(AlertResult(outcome.incident.alert, outcome))
    return redirect(r.incident_page_path(incident_id))
