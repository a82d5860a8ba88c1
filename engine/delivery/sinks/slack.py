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
    top_findings,
)
from engine.delivery.sinks.fit import clip, utf16_len
from engine.store.base import Delivery

EMOJI = {
    "critical": ":rotating_light:",
    "high": ":red_circle:",
    "medium": ":large_orange_circle:",
    "low": ":large_yellow_circle:",
    "info": ":information_source:",
}
HEADINGS = {"trigger": "", "update": "Still firing: ", "resolve": "Resolved: "}
# Block Kit limits (docs.slack.dev, Block Kit reference; Slack counts UTF-16 units): 50
# blocks a message, 3,000 a section's text, 2,000 a field, 150 a header. The total text of
# a message's blocks has no documented figure: Slack answers `msg_blocks_too_long` from
# about 13,200 (slackapi/bolt-js#2509: 13,297 with section blocks only, 13,172 with a
# divider). We design for 12,000.
MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_HEADER = 150
MAX_BLOCKS_TEXT = 12_000
MAX_FALLBACK = 3000  # the notification text (`text`): shown in notifications, not blocks
MAX_NARRATION = 3000
MAX_FINDING = 1500  # a finding's section: long ones are cut so that more findings show
RESERVED_BLOCKS = 2  # the "... and N more findings" line and the link
RESERVED_TEXT = 100  # the "... and N more findings" line


def escape(text: Any) -> str:
    """mrkdwn escaping: masked log patterns such as `timeout after <num>ms` must show."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str, limit: int = MAX_SECTION) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, limit)}}


def _finding(f: Mapping[str, Any], limit: int) -> dict[str, Any]:
    lines = [f"*{escape(str(f.get('severity', '')).upper())}* `{escape(f.get('rule'))}`"]
    lines.append(escape(f.get("summary", "")))
    if f.get("suggestion"):
        lines.append(f":bulb: {escape(f['suggestion'])}")
    paths = evidence_paths(f)
    if paths:
        lines.append("Evidence: " + ", ".join(f"`{escape(p)}`" for p in paths))
    return _section("\n".join(lines), limit)


def block_text(blocks: list[dict[str, Any]]) -> int:
    """The text the blocks carry, in UTF-16 units (what msg_blocks_too_long measures)."""
    total = 0
    for block in blocks:
        text = block.get("text")
        if isinstance(text, dict):
            total += utf16_len(str(text.get("text", "")))
        for field in block.get("fields") or []:
            total += utf16_len(str(field.get("text", "")))
    return total


def build_message(
    payload: Mapping[str, Any], event: str, narration: str | None = None, minimal: bool = False
) -> dict[str, Any]:
    """The Block Kit message, within Slack's limits. `narration` (NARRATION HOOK): an LLM
    text to show; the notification text falls back to the template narration. Findings
    are shown in order until the blocks or the text budget run out; the rest are
    counted. `minimal`: title, severity, link and the top findings only."""
    inc = payload["incident"]
    sev = str(inc.get("severity", "info"))
    title = f"{HEADINGS.get(event, '')}[{sev.upper()}] {inc.get('title', '')}"
    fields = [
        f"*Severity*\n{EMOJI.get(sev, '')} {escape(sev)}",
        f"*Team*\n{escape(inc.get('team') or '-')}",
        f"*Service*\n{escape(inc.get('service') or '-')}",
        f"*Status*\n{escape(inc.get('status'))}",
    ]
    header = {"type": "plain_text", "text": clip(title, MAX_HEADER), "emoji": True}
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": header},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(t, 200)} for t in fields]},
    ]
    if narration and not minimal:
        blocks.append(_section(escape(narration), MAX_NARRATION))
    link = str(payload.get("link") or "")
    tail = []  # the link closes the message, whatever else had to go
    if link:
        url = clip(link.replace("&", "&amp;"), 2000, "")
        tail.append(_section(f"<{url}|Open incident {escape(inc.get('id'))}>"))
    reserve = RESERVED_TEXT + block_text(tail)
    findings = top_findings(inc) if minimal else list(inc.get("findings") or [])
    shown = 0
    for f in findings:
        room = MAX_BLOCKS_TEXT - reserve - block_text(blocks)
        if len(blocks) >= MAX_BLOCKS - RESERVED_BLOCKS or room < 200:
            break
        blocks.append(_finding(f, min(room, 1000 if minimal else MAX_FINDING)))
        shown += 1
    total = len(inc.get("findings") or [])
    if total > shown:
        blocks.append(_section(f"... and {total - shown} more findings (open the incident)"))
    blocks += tail
    fallback = title if minimal else narration_text(payload, narration)
    message: dict[str, Any] = {"text": clip(escape(fallback), MAX_FALLBACK), "blocks": blocks}
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
        message = build_message(payload, delivery.event, ctx.narration, ctx.minimal)
        return post(
            url, message, timeout=self.spec.timeout, idempotent=False, redactor=ctx.redactor
        )
