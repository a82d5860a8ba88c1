"""Generic JSON webhook, signed with HMAC-SHA256.

Headers: `X-Incident-Pilot-Delivery` (stable across retries: the receiver de-duplicates
on it), `X-Incident-Pilot-Event`, `X-Incident-Pilot-Timestamp` (unix seconds, per
attempt) and `X-Incident-Pilot-Signature: sha256=<hex HMAC of "{timestamp}.{body}">`.
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
    narration_text,
    post,
    secret_for,
)
from engine.store.base import Delivery

SIGNATURE = "X-Incident-Pilot-Signature"
TIMESTAMP = "X-Incident-Pilot-Timestamp"
DELIVERY = "X-Incident-Pilot-Delivery"
EVENT = "X-Incident-Pilot-Event"


def delivery_id(delivery: Delivery) -> str:
    return f"{delivery.incident_id}.{delivery.id}"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def build_body(delivery: Delivery, narration: str | None = None) -> bytes:
    payload: Mapping[str, Any] = delivery.payload
    doc = {
        "delivery_id": delivery_id(delivery),
        "event": delivery.event,
        "outcome": EVENT_WORDS.get(delivery.event, delivery.event),
        "incident": payload["incident"],
        "link": payload.get("link"),
        "narration": narration_text(payload, narration),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")


class WebhookSink:
    type = "webhook"
    idempotent = True  # the receiver de-duplicates on X-Incident-Pilot-Delivery
    supports_resolve = True

    def __init__(self, spec: SinkSpec) -> None:
        self.name = spec.name
        self.spec = spec
        self.url = str(spec.options["url"])

    def send(self, delivery: Delivery, ctx: SendContext) -> SendResult:
        secret = secret_for(ctx, self.spec.secrets["secret"])
        assert secret is not None
        body = build_body(delivery, ctx.narration)
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
