"""PagerDuty Events API v2: `POST {url}/v2/enqueue`.

trigger (and update, a re-trigger) carries `dedup_key` = "incident-pilot/<incident id>",
so PagerDuty folds a retried or repeated event into the same alert: retries are safe.
A resolution sends `resolve` with the same dedup_key. Every event fits the API's limits
(`fit_event`): the narration goes first, then the findings' detail, never the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.delivery.config import SinkSpec
from engine.delivery.sinks.base import (
    SendContext,
    SendResult,
    evidence_paths,
    narration_text,
    post,
    secret_for,
    top_findings,
)
from engine.delivery.sinks.fit import clip, json_size
from engine.store.base import Delivery

DEFAULT_URL = "https://events.pagerduty.com"
# The Events API v2 limits (developer.pagerduty.com, "Events API v2 Overview": payloads
# are limited to 512 KB; "Send an Alert Event": summary 1024 characters, dedup_key 255).
# We stay 12 KB under the cap, whatever "KB" means there.
MAX_EVENT_BYTES = 500_000
MAX_DEDUP_KEY = 255
MAX_FIELD = 1024  # source, component, group, class: undocumented; kept summary-sized
MAX_LEAN_SUMMARY = 1024
MAX_LEAN_PATHS = 20
NARRATION_OMITTED = "(omitted: the event was over PagerDuty's size limit; see the link)"
# Our severities -> PagerDuty's four.
SEVERITY = {
    "critical": "critical",
    "high": "error",
    "medium": "warning",
    "low": "info",
    "info": "info",
}


def dedup_key(incident_id: str) -> str:
    return clip(f"incident-pilot/{incident_id}", MAX_DEDUP_KEY, "")


def _finding(f: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "rule": f.get("rule"),
        "severity": f.get("severity"),
        "summary": f.get("summary"),
        "suggestion": f.get("suggestion"),
        "evidence": evidence_paths(f),
    }


def _lean(f: Mapping[str, Any]) -> dict[str, Any]:
    """A finding cut down to what a responder needs first: its summary and evidence."""
    return {
        "rule": f.get("rule"),
        "severity": f.get("severity"),
        "summary": clip(f.get("summary") or "", MAX_LEAN_SUMMARY),
        "evidence": [clip(p, MAX_LEAN_SUMMARY) for p in f.get("evidence", [])[:MAX_LEAN_PATHS]],
    }


def fit_event(body: dict[str, Any], limit: int = MAX_EVENT_BYTES) -> dict[str, Any]:
    """`body` within `limit` bytes: drop the narration first, then the findings'
    suggestions and long texts, then the last findings (their count is kept)."""
    details = body["payload"]["custom_details"]
    if json_size(body) <= limit:
        return body
    details["narration"] = NARRATION_OMITTED
    if json_size(body) <= limit:
        return body
    findings = details["findings"] = [_lean(f) for f in details["findings"]]
    if json_size(body) <= limit:
        return body
    # Drop from the end, halving the step until it fits (a few dozen sizings at most).
    keep, total = len(findings), len(findings)
    while keep > 0 and json_size(body) > limit:
        keep = keep // 2 if json_size(body) > 2 * limit else keep - 1
        details["findings"] = findings[:keep]
        details["findings_omitted"] = total - keep
    return body


def build_event(
    payload: Mapping[str, Any],
    event: str,
    routing_key: str,
    narration: str | None = None,
    *,
    source: str | None = None,
    minimal: bool = False,
) -> dict[str, Any]:
    """The Events API v2 body, within PagerDuty's limits. `source`: the sink's `source`
    option (default: the incident's service). `minimal`: title, severity, link and the
    top findings only (the retry of an event PagerDuty refused)."""
    inc = payload["incident"]
    key = dedup_key(str(inc["id"]))
    if event == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    chosen = top_findings(inc) if minimal else inc.get("findings") or []
    findings = [_lean(_finding(f)) if minimal else _finding(f) for f in chosen]
    link = str(payload.get("link") or "")
    details: dict[str, Any] = {
        "incident_id": inc.get("id"),
        "team": inc.get("team"),
        "severity": inc.get("severity"),
        "findings": findings,
    }
    if minimal:
        details["findings_omitted"] = len(inc.get("findings") or []) - len(findings)
        details["link"] = link
    else:
        details["narration"] = narration_text(payload, narration)
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": clip(f"[{str(inc.get('severity')).upper()}] {inc.get('title')}", 1024),
            "source": clip(source or inc.get("service") or "incident-pilot", MAX_FIELD),
            "severity": SEVERITY.get(str(inc.get("severity")), "warning"),
            "timestamp": inc.get("opened_at"),
            "component": _optional(inc.get("service")),
            "group": _optional(inc.get("team")),
            "class": _optional(inc.get("alertname")),
            "custom_details": details,
        },
        "client": "incident-pilot",
    }
    if link:
        body["client_url"] = link
        body["links"] = [{"href": link, "text": f"incident-pilot {inc.get('id')}"}]
    return fit_event(body)


def _optional(value: Any) -> str | None:
    return None if value is None else clip(value, MAX_FIELD)


class PagerDutySink:
    type = "pagerduty"
    idempotent = True
    supports_resolve = True

    def __init__(self, spec: SinkSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self.url = str(spec.options.get("url", DEFAULT_URL)).rstrip("/") + "/v2/enqueue"

    def send(self, delivery: Delivery, ctx: SendContext) -> SendResult:
        options = delivery.payload.get("options", {})
        ref = options.get("routing_key_ref") or self.spec.secrets.get("routing_key")
        key = secret_for(ctx, ref)
        if key is None:
            return SendResult("fail", "no routing key for this route")
        source = self.spec.options.get("source")
        body = build_event(
            delivery.payload,
            delivery.event,
            key,
            ctx.narration,
            source=str(source) if source else None,
            minimal=ctx.minimal,
        )
        return post(
            self.url, body, timeout=self.spec.timeout, idempotent=True, redactor=ctx.redactor
        )
