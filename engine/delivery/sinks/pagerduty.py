"""PagerDuty Events API v2: `POST {url}/v2/enqueue`.

trigger (and update, a re-trigger) carries `dedup_key` = "incident-pilot/<incident id>",
so PagerDuty folds a retried or repeated event into the same alert: retries are safe.
A resolution sends `resolve` with the same dedup_key.
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
)
from engine.store.base import Delivery

DEFAULT_URL = "https://events.pagerduty.com"
# Our severities -> PagerDuty's four.
SEVERITY = {
    "critical": "critical",
    "high": "error",
    "medium": "warning",
    "low": "info",
    "info": "info",
}


def dedup_key(incident_id: str) -> str:
    return f"incident-pilot/{incident_id}"


def build_event(
    payload: Mapping[str, Any], event: str, routing_key: str, narration: str | None = None
) -> dict[str, Any]:
    inc = payload["incident"]
    key = dedup_key(str(inc["id"]))
    if event == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    findings = [
        {
            "rule": f.get("rule"),
            "severity": f.get("severity"),
            "summary": f.get("summary"),
            "suggestion": f.get("suggestion"),
            "evidence": evidence_paths(f),
        }
        for f in inc.get("findings") or []
    ]
    link = str(payload.get("link") or "")
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": f"[{str(inc.get('severity')).upper()}] {inc.get('title')}"[:1024],
            "source": inc.get("service") or "incident-pilot",
            "severity": SEVERITY.get(str(inc.get("severity")), "warning"),
            "timestamp": inc.get("opened_at"),
            "component": inc.get("service"),
            "group": inc.get("team"),
            "class": inc.get("alertname"),
            "custom_details": {
                "incident_id": inc.get("id"),
                "team": inc.get("team"),
                "severity": inc.get("severity"),
                "findings": findings,
                "narration": narration_text(payload, narration),
            },
        },
        "client": "incident-pilot",
    }
    if link:
        body["client_url"] = link
        body["links"] = [{"href": link, "text": f"incident-pilot {inc.get('id')}"}]
    return body


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
        body = build_event(delivery.payload, delivery.event, key, ctx.narration)
        return post(
            self.url, body, timeout=self.spec.timeout, idempotent=True, redactor=ctx.redactor
        )
