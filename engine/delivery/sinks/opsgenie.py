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
    top_findings,
)
from engine.delivery.sinks.fit import clip, details_size, utf16_len
from engine.store.base import Delivery

DEFAULT_URL = "https://api.opsgenie.com"  # EU accounts: https://api.eu.opsgenie.com
# The Alert API's field limits (docs.opsgenie.com, "alerts and alert fields"; Opsgenie
# counts UTF-16 units): message 130, alias 512, description 15,000, entity 512, at most
# 20 tags of 50 characters each, and `details` (extra properties) 8,000 in total.
MAX_MESSAGE, MAX_ALIAS, MAX_DESC, MAX_ENTITY = 130, 512, 15_000, 512
MAX_TAGS, MAX_TAG, MAX_DETAILS = 20, 50, 8_000
MAX_NOTE = 25_000  # a close request's note
RESERVE = 40  # room kept for the `more_findings` entry
MIN_FINDING = 80  # a finding cut shorter than this is counted, not shown
MAX_FINDING = 1000  # a long finding is cut so that more findings show
PRIORITY = {"critical": "P1", "high": "P2", "medium": "P3", "low": "P4", "info": "P5"}


def _finding_text(f: Mapping[str, Any], minimal: bool) -> str:
    text = f"[{f.get('severity')}] {f.get('summary')}"
    if f.get("suggestion") and not minimal:
        text += f" -> {f.get('suggestion')}"
    paths = evidence_paths(f)
    if paths:
        text += f" (evidence: {', '.join(paths)})"
    return text


def build_details(
    inc: Mapping[str, Any], link: str, minimal: bool = False, budget: int = MAX_DETAILS
) -> dict[str, str]:
    """`details` within `budget` UTF-16 units in total (keys and values): the incident's
    facts first, then one entry per finding, each cut to what is left (at least
    MIN_FINDING, else it and the rest are counted in `more_findings`)."""
    details = {
        "incident_id": clip(inc.get("id"), 100),
        "severity": str(inc.get("severity")),
        "team": clip(inc.get("team") or "-", 200),
        "service": clip(inc.get("service") or "-", 200),
        "link": clip(link, 1000),
    }
    findings = top_findings(inc) if minimal else list(inc.get("findings") or [])
    room = budget - details_size(details) - RESERVE
    for i, f in enumerate(findings, 1):
        key = clip(f"finding_{i}_{f.get('rule')}", 100, "")
        if room - utf16_len(key) < MIN_FINDING:
            details["more_findings"] = f"{len(findings) - i + 1} more: see the link"
            break
        details[key] = clip(_finding_text(f, minimal), min(room - utf16_len(key), MAX_FINDING))
        room -= utf16_len(key) + utf16_len(details[key])
    return details


def build_create(
    payload: Mapping[str, Any],
    options: Mapping[str, Any],
    narration: str | None = None,
    minimal: bool = False,
) -> dict[str, Any]:
    """The create-alert body within Opsgenie's limits (counted in UTF-16 units).
    `minimal`: title, severity, link and the top findings (the retry after a 422)."""
    inc = payload["incident"]
    sev = str(inc.get("severity", "info"))
    link = str(payload.get("link") or "")
    tags = ["incident-pilot", f"severity:{sev}", *options.get("tags", [])]
    body: dict[str, Any] = {
        "message": clip(f"[{sev.upper()}] {inc.get('title')}", MAX_MESSAGE),
        "alias": clip(inc["id"], MAX_ALIAS, ""),
        "description": clip(link if minimal else narration_text(payload, narration), MAX_DESC),
        "priority": PRIORITY.get(sev, "P3"),
        "source": "incident-pilot",
        "tags": [clip(t, MAX_TAG, "") for t in dict.fromkeys(tags)][:MAX_TAGS],
        "details": build_details(inc, link, minimal),
    }
    if inc.get("service"):
        body["entity"] = clip(inc["service"], MAX_ENTITY)
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
            body: dict[str, Any] = {"source": "incident-pilot", "note": clip(note, MAX_NOTE)}
        else:
            url = f"{self.base}/v2/alerts"
            body = build_create(delivery.payload, options, ctx.narration, ctx.minimal)
        return post(
            url,
            body,
            headers=headers,
            timeout=self.spec.timeout,
            idempotent=True,
            redactor=ctx.redactor,
        )
