"""Generic JSON webhook, signed with HMAC-SHA256.

Headers: `X-Incident-Pilot-Delivery` (stable across retries: the receiver de-duplicates
on it), `X-Incident-Pilot-Event`, `X-Incident-Pilot-Timestamp` (unix seconds, per
attempt) and `X-Incident-Pilot-Signature: sha256=<hex HMAC of "{timestamp}.{body}">`.
The body is at most `max_body` bytes (default 1 MiB; `fit_body` says what goes first).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from engine.delivery.config import SinkSpec
from engine.delivery.sinks.base import (
    EVENT_WORDS,
    SendContext,
    SendResult,
    evidence_paths,
    narration_text,
    post,
    secret_for,
    top_findings,
)
from engine.delivery.sinks.fit import clip
from engine.store.base import Delivery

SIGNATURE = "X-Incident-Pilot-Signature"
TIMESTAMP = "X-Incident-Pilot-Timestamp"
DELIVERY = "X-Incident-Pilot-Delivery"
EVENT = "X-Incident-Pilot-Event"
MAX_BODY = 1024 * 1024  # bytes; the sink's `max_body` option changes it
LEAN_TEXT = 1024
LEAN_PATHS = 20


def delivery_id(delivery: Delivery) -> str:
    return f"{delivery.incident_id}.{delivery.id}"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _lean(f: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "rule": f.get("rule"),
        "severity": f.get("severity"),
        "summary": clip(f.get("summary") or "", LEAN_TEXT),
        "suggestion": clip(f.get("suggestion") or "", LEAN_TEXT),
        "evidence": [{"path": p} for p in evidence_paths(f)[:LEAN_PATHS]],
    }


def _clip_values(mapping: Any) -> dict[str, str]:
    return {clip(k, LEAN_TEXT): clip(v, LEAN_TEXT) for k, v in (mapping or {}).items()}


def _encode(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


def fit_body(doc: dict[str, Any], limit: int) -> bytes:
    """`doc` encoded within `limit` bytes: narration first, then the findings' snapshots
    and long texts (and the alert's labels and annotations), then the last findings.
    A cut body says `"truncated": true`; GET /api/incidents/{id} has it all."""
    body = _encode(doc)
    if len(body) <= limit:
        return body
    doc["truncated"] = True
    doc["narration"] = clip(doc["narration"], LEAN_TEXT)
    inc = doc["incident"] = dict(doc["incident"])
    inc["narration"] = None
    inc["title"] = clip(inc.get("title") or "", LEAN_TEXT)
    alert = inc.get("alert")
    if isinstance(alert, dict):
        inc["alert"] = {
            **alert,
            "labels": _clip_values(alert.get("labels")),
            "annotations": _clip_values(alert.get("annotations")),
        }
    findings = inc["findings"] = [_lean(f) for f in inc.get("findings") or []]
    total, keep = len(findings), len(findings)
    body = _encode(doc)
    while len(body) > limit and keep > 0:
        keep = keep // 2 if len(body) > 2 * limit else keep - 1
        inc["findings"] = findings[:keep]
        doc["findings_omitted"] = total - keep
        body = _encode(doc)
    return body


def build_body(
    delivery: Delivery,
    narration: str | None = None,
    *,
    max_body: int = MAX_BODY,
    minimal: bool = False,
) -> bytes:
    """The JSON body, at most `max_body` bytes. `minimal`: the incident's id, title,
    severity, status, service, team and top findings, with the link (the retry of a
    body the receiver refused with 400, 413 or 422)."""
    payload: Mapping[str, Any] = delivery.payload
    incident = payload["incident"]
    if minimal:
        keys = ("id", "path", "status", "title", "severity", "service", "team", "opened_at")
        incident = {k: incident.get(k) for k in keys}
        incident["title"] = clip(incident.get("title") or "", LEAN_TEXT)
        incident["findings"] = [_lean(f) for f in top_findings(payload["incident"])]
    doc = {
        "delivery_id": delivery_id(delivery),
        "event": delivery.event,
        "outcome": EVENT_WORDS.get(delivery.event, delivery.event),
        "incident": incident,
        "link": payload.get("link"),
        "narration": "" if minimal else narration_text(payload, narration),
    }
    if minimal:
        doc["minimal"] = True
    return fit_body(doc, max_body)


class WebhookSink:
    type = "webhook"
    idempotent = True  # the receiver de-duplicates on X-Incident-Pilot-Delivery
    supports_resolve = True

    def __init__(self, spec: SinkSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self.url = str(spec.options["url"])
        self.max_body = int(spec.options.get("max_body", MAX_BODY))

    def send(self, delivery: Delivery, ctx: SendContext) -> SendResult:
        secret = secret_for(ctx, self.spec.secrets["secret"])
        assert secret is not None
        body = build_body(delivery, ctx.narration, max_body=self.max_body, minimal=ctx.minimal)
        timestamp = str(int(time.time()))
        headers = {
            **self.spec.options.get("headers", {}),
            DELIVERY: delivery_id(delivery),
            EVENT: delivery.event,
            TIMESTAMP: timestamp,
            SIGNATURE: sign(secret, timestamp, body),
        }
        return post(
            self.url,
            body,
            headers=headers,
            timeout=self.spec.timeout,
            idempotent=True,
            redactor=ctx.redactor,
        )
