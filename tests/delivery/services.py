"""What the real services accept: checks a stand-in applies to every request it gets, and
the answer the real service gives when one fails.

The limits are the services' documented ones (cited in engine/delivery/sinks/*.py and
docs/OPERATIONS.md), counted as each service counts: Slack and Opsgenie in UTF-16 units.
Slack's total block text has no documented figure; the stand-in refuses above 13,000
units, just under what Slack was seen to refuse (13,172 and 13,297, slackapi/bolt-js#2509).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .conftest import Reply, Seen

Check = Callable[[Seen], Reply | None]


def u16(text: Any) -> int:
    return len(str(text).encode("utf-16-le")) // 2


def _pd_error(*errors: str) -> Reply:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    return Reply(400, {"Content-Type": "application/json"}, json.dumps(body).encode())


def pagerduty(req: Seen) -> Reply | None:
    """Events API v2: 512 KB an event, summary 1024, dedup_key 255, required fields."""
    if len(req.body) > 512 * 1024:
        return _pd_error("Event object is too large: the limit is 512 KB")
    event = req.json()
    if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        return _pd_error("'event_action' is invalid")
    if not event.get("routing_key"):
        return _pd_error("'routing_key' is missing or blank")
    if u16(event.get("dedup_key", "")) > 255:
        return _pd_error("'dedup_key' cannot be longer than 255 characters")
    if event["event_action"] != "trigger":
        return None
    payload = event.get("payload") or {}
    for field in ("summary", "source", "severity"):
        if not payload.get(field):
            return _pd_error(f"'payload.{field}' is missing or blank")
    if u16(payload["summary"]) > 1024:
        return _pd_error("'payload.summary' cannot be longer than 1024 characters")
    if payload["severity"] not in ("critical", "error", "warning", "info"):
        return _pd_error("'payload.severity' is invalid")
    return None


def _og_error(field: str, message: str) -> Reply:
    body = {
        "message": "Request body is not processable. Please check the errors.",
        "errors": {field: message},
        "took": 0.001,
        "requestId": "00000000-0000-0000-0000-000000000000",
    }
    return Reply(422, {"Content-Type": "application/json"}, json.dumps(body).encode())


def opsgenie(req: Seen) -> Reply | None:
    """Alert API create: message 130, alias 512, description 15,000, entity 512, 20 tags
    of 50, details 8,000 in total (keys and values); UTF-16 units."""
    if "/close" in req.path:
        return None
    alert = req.json()
    limits = {"message": 130, "alias": 512, "description": 15_000, "entity": 512}
    if not alert.get("message"):
        return _og_error("message", "Message can not be empty.")
    for field, limit in limits.items():
        if u16(alert.get(field, "")) > limit:
            return _og_error(field, f"{field} can not be longer than {limit} characters.")
    tags = alert.get("tags") or []
    if len(tags) > 20 or any(u16(t) > 50 for t in tags):
        return _og_error("tags", "At most 20 tags of 50 characters each.")
    details = alert.get("details") or {}
    if not all(isinstance(v, str) for v in details.values()):
        return _og_error("details", "Details values must be strings.")
    if sum(u16(k) + u16(v) for k, v in details.items()) > 8000:
        return _og_error("details", "Details can not be longer than 8000 characters in total.")
    return None


def _slack_error(code: str) -> Reply:
    return Reply(400, {"Content-Type": "text/plain"}, code.encode())


def slack_block_text(blocks: list[dict[str, Any]]) -> int:
    total = 0
    for block in blocks:
        if isinstance(block.get("text"), dict):
            total += u16(block["text"].get("text", ""))
        total += sum(u16(f.get("text", "")) for f in block.get("fields") or [])
    return total


def slack(req: Seen) -> Reply | None:
    """Incoming webhook, Block Kit: 50 blocks, section text 3,000, fields 10 of 2,000,
    header 150 plain_text; total block text under ~13,200; `text` given."""
    message = req.json()
    blocks = message.get("blocks") or []
    if not message.get("text"):
        return _slack_error("no_text")
    if len(blocks) > 50:
        return _slack_error("invalid_blocks")
    for block in blocks:
        text = block.get("text") or {}
        if block["type"] == "header":
            if text.get("type") != "plain_text" or not 0 < u16(text.get("text", "")) <= 150:
                return _slack_error("invalid_blocks")
        elif block["type"] == "section":
            fields = block.get("fields") or []
            if text and not 0 < u16(text.get("text", "")) <= 3000:
                return _slack_error("invalid_blocks")
            if len(fields) > 10 or any(u16(f.get("text", "")) > 2000 for f in fields):
                return _slack_error("invalid_blocks")
    if slack_block_text(blocks) > 13_000:
        return _slack_error("msg_blocks_too_long")
    return None


def webhook(limit: int = 1024 * 1024) -> Check:
    """A receiver behind a proxy that takes bodies up to `limit` bytes."""

    def check(req: Seen) -> Reply | None:
        if len(req.body) > limit:
            return Reply(413, {"Content-Type": "text/plain"}, b"Request Entity Too Large")
        return None

    return check
