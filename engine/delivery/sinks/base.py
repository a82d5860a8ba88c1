"""What every sink is: a Protocol, the result of one attempt, and the HTTP plumbing.

A sink turns one stored delivery (the incident snapshot taken when the event happened)
into one request. `idempotent` says whether sending the same delivery twice is harmless
(PagerDuty dedup_key, Opsgenie alias, the webhook's delivery id): only then is a request
whose answer was lost (a read timeout after it was sent) retried.
"""

from __future__ import annotations

import email.utils
import functools
import json
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import httpx

from engine.delivery.config import SinkSpec
from engine.delivery.secrets import Redactor, Secret
from engine.narrate import render_text
from engine.store.base import Delivery

Status = Literal["ok", "retry", "fail", "unconfirmed"]
USER_AGENT = "incident-pilot"
# The outcome a delivery's event stands for (what the stdout report calls it).
EVENT_WORDS = {"trigger": "opened", "update": "attached", "resolve": "resolved"}
# Answers that blame the payload: 400 (invalid, e.g. Slack's invalid_blocks), 413 (too
# large), 422 (unprocessable, Opsgenie's answer to a field over its limit).
PAYLOAD_FAULTS = frozenset({400, 413, 422})
MINIMAL_FINDINGS = 3  # a minimal message carries the incident's most severe findings
RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}


@dataclass(frozen=True)
class SendResult:
    """ok: accepted. retry: not accepted, try again (after retry_after seconds, when the
    sink said). fail: refused for good (4xx). unconfirmed: the request went out but no
    answer came, and the sink cannot de-duplicate a second copy: not retried."""

    status: Status
    error: str | None = None
    retry_after: float | None = None
    http_status: int | None = None  # the receiver's answer, when one came

    @property
    def payload_refused(self) -> bool:
        """Refused for what the request carried (too large, invalid), not for who sent
        it (401, 403) or where (404): a smaller message may be accepted."""
        return self.status == "fail" and self.http_status in PAYLOAD_FAULTS


@dataclass(frozen=True)
class SendContext:
    secrets: Mapping[str, Secret]  # ref -> value, resolved when the config was loaded
    redactor: Redactor
    narration: str | None = None  # NARRATION HOOK: an LLM text, else the template's
    # The one retry of a message its receiver refused for its payload (400, 413, 422):
    # title, severity, link and the top findings only.
    minimal: bool = False


class Sink(Protocol):
    name: str
    type: str
    idempotent: bool
    supports_resolve: bool

    def send(self, delivery: Delivery, ctx: SendContext) -> SendResult: ...


SinkFactory = Callable[[SinkSpec], Sink]
REGISTRY: dict[str, SinkFactory] = {}  # sink type -> factory; filled by engine.delivery.sinks


def narration_text(payload: Mapping[str, Any], narration: str | None = None) -> str:
    """NARRATION HOOK. The narration a message carries: `narration` when given (e.g. the
    text of engine.llm's `narrate(incident)`), else the template report of the incident
    (templates/incident.txt.j2), the same text stdout prints."""
    if narration:
        return narration
    word = EVENT_WORDS.get(str(payload.get("event")), "opened")
    return render_text(payload["incident"], word, link=str(payload.get("link") or ""))


def secret_for(ctx: SendContext, ref: str | None) -> str | None:
    if ref is None:
        return None
    found = ctx.secrets.get(ref)
    if found is None:  # a route entry written after this delivery was stored
        from engine.delivery.secrets import resolve

        found = resolve(ref)
    return found.reveal()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent/garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify(resp: httpx.Response, redactor: Redactor) -> SendResult:
    if 200 <= resp.status_code < 300:
        return SendResult("ok")
    body = redactor.excerpt(resp.text, 200).replace("\n", " ")
    error = f"HTTP {resp.status_code}: {body}".strip()
    code = resp.status_code
    if resp.status_code in (408, 425, 429) or resp.status_code >= 500:
        return SendResult("retry", error, parse_retry_after(resp.headers.get("Retry-After")), code)
    return SendResult("fail", error, http_status=code)  # 4xx: a bad key or payload stays bad


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every request (building one per request costs a CA load)."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def post(
    url: str,
    body: bytes | dict[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    idempotent: bool,
    redactor: Redactor,
) -> SendResult:
    """POST and classify. One connection per request: a stale pooled connection would make
    a request look sent when it was not."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, verify=_tls()) as client:
            resp = client.post(url, content=data, headers=all_headers)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        return SendResult("retry", redactor.scrub(f"not sent: {type(exc).__name__}: {exc}"))
    except httpx.TransportError as exc:
        # The request may have reached the sink (it timed out or dropped the connection
        # before answering): safe to repeat only when the sink de-duplicates.
        error = redactor.scrub(f"no answer: {type(exc).__name__}: {exc}")
        return SendResult("retry" if idempotent else "unconfirmed", error)
    return classify(resp, redactor)


def evidence_paths(finding: Mapping[str, Any]) -> list[str]:
    return [str(e.get("path")) for e in finding.get("evidence") or [] if e.get("path")]


def top_findings(incident: Mapping[str, Any], n: int = MINIMAL_FINDINGS) -> list[dict[str, Any]]:
    """The `n` most severe findings (stable: the incident's order among equals)."""
    found = list(incident.get("findings") or [])
    found.sort(key=lambda f: -RANK.get(str(f.get("severity")), 0))
    return found[:n]
