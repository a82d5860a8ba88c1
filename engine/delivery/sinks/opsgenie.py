"""Opsgenie Alert API: create with `alias` = incident id, close by alias on resolution.

Opsgenie keeps one open alert per alias (a second create only bumps its count), and
closing is idempotent, so retries are safe. `Authorization: GenieKey <key>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

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

DEFAULT_URL = "https://api.opsgenie.com"  # EU accounts: https://api.eu.opsgenie.com
PRIORITY = {"critical": "P1", "high": "P2", "medium": "P3", "low": "P4", "info": "P5"}


def build_create(
    payload: Mapping[str, Any], options: Mapping[str, Any], narration: str | None = None
) -> dict[str, Any]:
    inc = payload["incident"]
    sev = str(inc.get("severity", "info"))
    details = {
        "incident_id": str(inc.get("id")),
        "severity": sev,
        "team": str(inc.get("team") or "-"),
        "service": str(inc.get("service") or "-"),
        "link": str(payload.get("link") or ""),
    }
    for i, f in enumerate(inc.get("findings") or [], 1):
        text = f"[{f.get('severity')}] {f.get('summary')}"
        if f.get("suggestion"):
            text += f" -> {f.get('suggestion')}"
        paths = evidence_paths(f)
        if paths:
            text += f" (evidence: {', '.join(paths)})"
        details[f"finding_{i}_{f.get('rule')}"] = text[:8000]
    tags = ["incident-pilot", f"severity:{sev}", *options.get("tags", [])]
    body: dict[str, Any] = {
        "message": f"[{sev.upper()}] {inc.get('title')}"[:130],
        "alias": str(inc["id"]),
        "description": narration_text(payload, narration)[:15000],
        "priority": PRIORITY.get(sev, "P3"),
        "source": "incident-pilot",
        "tags": tags,
        "details": details,
    }
    if inc.get("service"):
        body["entity"] = str(inc["service"])[:512]
    responders = options.get("responders") or []
    if responders:
        body["responders"] = [{"name": name, "type": "team"} for name in responders]
    return body


class OpsgenieSink:
    type = "opsgenie"
    idempotent = True
    supports_resolve = True

    def __init__(self, spec: SinkSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self.base = str(spec.options.get("url", DEFAULT_URL)).rstrip("/")

    def send(self, delivery: Delivery, ctx: SendContext) -> SendResult:
        key = secret_for(ctx, self.spec.secrets["api_key"])
        headers = {"Authorization": f"GenieKey {key}"}
        options = {**self.spec.options, **delivery.payload.get("options", {})}
        inc = delivery.payload["incident"]
        if delivery.event == "resolve":
            alias = quote(str(inc["id"]), safe="")
            url = f"{self.base}/v2/alerts/{alias}/close?identifierType=alias"
            note = (inc.get("resolution") or {}).get("note") or "resolved"
            body: dict[str, Any] = {"source": "incident-pilot", "note": str(note)[:25000]}
        else:
            url = f"{self.base}/v2/alerts"
            body = build_create(delivery.payload, options, ctx.narration)
        return post(
            url,
            body,
            headers=headers,
            timeout=self.spec.timeout,
            idempotent=True,
            redactor=ctx.redactor,
        )
