"""Slack incoming webhook, Block Kit message.

Incoming webhooks cannot de-duplicate: a request whose answer was lost is recorded
`unconfirmed` instead of being sent again (at most once); a refused connection, a 5xx
or a 429 means it was not posted and is retried.
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

EMOJI = {
    "critical": ":rotating_light:",
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":large_yellow_circle:",
    "info": ":information_source:",
}
HEADINGS = {"trigger": "", "update": "Still firing: ", "resolve": "Resolved: "}
MAX_TEXT = 2900  # a section's text may hold 3000 characters
MAX_FINDINGS = 40  # a message may hold 50 blocks


def escape(text: Any) -> str:
    """mrkdwn escaping: masked log patterns such as `timeout after <num>ms` must show."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_TEXT]}}


def _finding(f: Mapping[str, Any]) -> dict[str, Any]:
    lines = [f"*{escape(str(f.get('severity', '')).upper())}* `{escape(f.get('rule'))}`"]
    lines.append(escape(f.get("summary", "")))
    if f.get("suggestion"):
        lines.append(f":bulb: {escape(f['suggestion'])}")
    paths = evidence_paths(f)
    if paths:
        lines.append("Evidence: " + ", ".join(f"`{escape(p)}`" for p in paths))
    return _section("\n".join(lines))


def build_message(
    payload: Mapping[str, Any], event: str, narration: str | None = None
) -> dict[str, Any]:
    """The Block Kit message. `narration` (NARRATION HOOK): an LLM text to show; the
    notification text falls back to the template narration."""
    inc = payload["incident"]
    sev = str(inc.get("severity", "info"))
    title = f"{HEADINGS.get(event, '')}[{sev.upper()}] {inc.get('title', '')}"
    fields = [
        f"*Severity*\n{EMOJI.get(sev, '')} {escape(sev)}",
        f"*Team*\n{escape(inc.get('team') or '-')}",
        f"*Service*\n{escape(inc.get('service') or '-')}",
        f"*Status*\n{escape(inc.get('status'))}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": t} for t in fields]},
    ]
    if narration:
        blocks.append(_section(escape(narration)))
    findings = list(inc.get("findings") or [])
    blocks += [_finding(f) for f in findings[:MAX_FINDINGS]]
    if len(findings) > MAX_FINDINGS:
        blocks.append(_section(f"... and {len(findings) - MAX_FINDINGS} more findings"))
    link = str(payload.get("link") or "")
    if link:
        url = link.replace("&", "&amp;")
        blocks.append(_section(f"<{url}|Open incident {escape(inc.get('id'))}>"))
    fallback = narration_text(payload, narration)
    message: dict[str, Any] = {"text": escape(fallback)[:MAX_TEXT], "blocks": blocks}
    channel = payload.get("options", {}).get("channel")
    if channel:
        message["channel"] = channel  # honoured by legacy webhooks only
    return message


class SlackSink:
    type = "slack"
    idempotent = False
    supports_resolve = True

    def __init__(self, spec: SinkSpec) -> None:
        self.name = spec.name
        self.spec = spec

    def send(self, delivery: Delivery, ctx: SendContext) -> SendResult:
        payload = dict(delivery.payload)
        options = {**self.spec.options, **payload.get("options", {})}
        payload["options"] = options
        url = secret_for(ctx, self.spec.secrets["webhook_url"])
        assert url is not None
        message = build_message(payload, delivery.event, ctx.narration)
        return post(
            url, message, timeout=self.spec.timeout, idempotent=False, redactor=ctx.redactor
        )
