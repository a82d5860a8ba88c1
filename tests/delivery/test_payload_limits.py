"""Every sink's payload meets its service's documented limits, whatever the incident's
size: stand-ins on loopback enforce those limits and answer as the real services do."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.delivery.config import SinkSpec
from engine.delivery.sinks import REGISTRY
from engine.delivery.sinks.fit import clip, utf16_len
from engine.model import Confidence, Evidence, Finding, Severity
from engine.server.limits import Limits
from engine.testing import make_alert, make_webhook

from . import services
from .conftest import StandIn, wait_until
from .helpers import context, make_delivery, make_incident

# Outside the Basic Multilingual Plane: 1 code point, 2 UTF-16 units. Text of these is
# what a code-point count gets wrong.
WIDE = "\U0001f525"
BIG = 10_000


def big_text(label: str, n: int = BIG) -> str:
    unit = f"{label} {WIDE} & <db> "
    return (unit * (n // len(unit) + 1))[:n]


def big_findings(n: int = 60) -> tuple[Finding, ...]:
    return tuple(
        Finding(
            f"rule.number_{i}",
            Severity.CRITICAL if i == 59 else Severity.MEDIUM,
            Confidence.HIGH,
            big_text(f"summary {i}"),
            big_text(f"suggestion {i}"),
            tuple(
                Evidence(f"context/logs/{i * 10 + k}", {"m": big_text("x", 500)}) for k in range(5)
            ),
        )
        for i in range(n)
    )


def big_incident() -> Any:
    inc = make_incident()
    alert = replace(
        inc.alert,
        annotations={"summary": big_text("title"), "description": big_text("description")},
    )
    return replace(inc, title=big_text("title"), alert=alert, findings=big_findings())


def sink(kind: str, **options: Any) -> Any:
    secrets = {k: options.pop(k) for k in list(options) if k in services_secrets}
    return REGISTRY[kind](SinkSpec("s", kind, {"timeout": 5.0, **options}, secrets))


services_secrets = ("webhook_url", "routing_key", "api_key", "secret")
CTX = {
    "env:SLACK": "",
    "env:PD": "pd-key-000000001",
    "env:OG": "genie-key-000001",
    "env:WH": "whsec-0000000001",
}


@pytest.fixture
def receivers(standin: Callable[..., StandIn]) -> dict[str, StandIn]:
    return {
        "slack": standin(default=None, check=services.slack),
        "pagerduty": standin(check=services.pagerduty),
        "opsgenie": standin(check=services.opsgenie),
        "webhook": standin(check=services.webhook()),
    }


def sinks_for(receivers: dict[str, StandIn]) -> dict[str, Any]:
    return {
        "slack": sink("slack", webhook_url="env:SLACK"),
        "pagerduty": sink(
            "pagerduty", url=receivers["pagerduty"].url, routing_key="env:PD", source="prod-eu-1"
        ),
        "opsgenie": sink("opsgenie", url=receivers["opsgenie"].url, api_key="env:OG"),
        "webhook": sink("webhook", url=receivers["webhook"].url, secret="env:WH"),
    }


def test_the_stand_ins_refuse_what_the_services_refuse(receivers) -> None:
    """The checks can fail: each stand-in refuses an over-limit request as its service."""
    import httpx

    pd = httpx.post(
        receivers["pagerduty"].url + "/v2/enqueue",
        json={
            "routing_key": "k",
            "event_action": "trigger",
            "payload": {"summary": "x" * 1025, "source": "s", "severity": "info"},
        },
    )
    assert pd.status_code == 400 and pd.json()["status"] == "invalid event"
    og = httpx.post(receivers["opsgenie"].url + "/v2/alerts", json={"message": WIDE * 66})
    assert og.status_code == 422 and "message" in og.json()["errors"]  # 132 UTF-16 units
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 2990}}] * 5
    sl = httpx.post(receivers["slack"].url, json={"text": "t", "blocks": blocks})
    assert (sl.status_code, sl.text) == (400, "msg_blocks_too_long")
    header = [{"type": "header", "text": {"type": "plain_text", "text": WIDE * 76}}]
    sl = httpx.post(receivers["slack"].url, json={"text": "t", "blocks": header})
    assert (sl.status_code, sl.text) == (400, "invalid_blocks")
    wh = httpx.post(receivers["webhook"].url, content=b"x" * (1024 * 1024 + 1))
    assert wh.status_code == 413


def test_a_huge_incident_is_accepted_by_every_sink(receivers) -> None:
    """60 findings of 10,000-character texts, 10,000-character annotations and title."""
    inc = big_incident()
    ctx = context(**{**CTX, "env:SLACK": receivers["slack"].url + "/services/T/B/x"})
    for kind, s in sinks_for(receivers).items():
        result = s.send(make_delivery(inc, "s"), ctx)
        assert result.status == "ok", (kind, result)
    for kind, server in receivers.items():
        assert len(server.requests) == 1 and server.refused == [], kind

    pd = receivers["pagerduty"].requests[0]
    assert len(pd.body) <= 512 * 1024
    event = pd.json()
    assert event["payload"]["source"] == "prod-eu-1"  # the sink's `source:` option
    assert utf16_len(event["payload"]["summary"]) <= 1024
    details = event["payload"]["custom_details"]
    assert "omitted" in details["narration"]  # the narration went first ...
    shown = details["findings"]
    assert shown and shown[0]["summary"].startswith("summary 0")  # ... findings stayed
    assert shown[0]["evidence"][:2] == ["context/logs/0", "context/logs/1"]
    assert len(shown) + details.get("findings_omitted", 0) == 60

    og = receivers["opsgenie"].requests[0].json()
    assert utf16_len(og["message"]) <= 130 and og["message"].endswith("…")
    assert sum(utf16_len(k) + utf16_len(v) for k, v in og["details"].items()) <= 8000
    assert "finding_1_rule.number_0" in og["details"] and "more_findings" in og["details"]

    msg = receivers["slack"].requests[0].json()
    assert len(msg["blocks"]) <= 50 and msg["text"]
    assert services.slack_block_text(msg["blocks"]) <= 12_000
    text = json.dumps(msg["blocks"])
    assert "more findings" in text and "Open incident" in text  # the link closes it

    assert len(receivers["webhook"].requests[0].body) <= 1024 * 1024
    doc = receivers["webhook"].requests[0].json()
    assert doc["truncated"] is True and doc["incident"]["findings"]


def test_clip_counts_utf16_units_and_never_splits_a_pair() -> None:
    text = WIDE * 100
    cut = clip(text, 131)
    assert utf16_len(cut) <= 131 and cut.endswith("…")
    assert cut[:-1] == WIDE * 65  # 130 units of whole pairs, then the marker
    assert clip("short", 130) == "short"
    assert clip("a &amp; b", 7) == "a …"  # no half entity left in mrkdwn


def test_a_webhook_body_honours_a_smaller_max_body(standin: Callable[..., StandIn]) -> None:
    server = standin(check=services.webhook(200_000))
    hook = sink("webhook", url=server.url, secret="env:WH", max_body=200_000)
    result = hook.send(make_delivery(big_incident(), "s"), context(**CTX))
    assert result.status == "ok" and server.refused == []
    assert len(server.requests[0].body) <= 200_000


def test_a_huge_incident_goes_out_to_every_sink_end_to_end(delivery_app, receivers) -> None:
    """Through the app: the alert has 10,000-character annotations, its incident gains 60
    findings before the worker sends (the worker sends the incident as stored)."""
    r = receivers
    config = f"""
delivery: {{base_delay: 20ms, max_delay: 100ms, max_age: 30s, poll_interval: 50ms}}
sinks:
  chat: {{type: slack, webhook_url_env: SLACK_URL}}
  pd: {{type: pagerduty, url: "{r["pagerduty"].url}", routing_key_env: PD_KEY, source: eu-1}}
  og: {{type: opsgenie, url: "{r["opsgenie"].url}", api_key_env: OG_KEY}}
  hook: {{type: webhook, url: "{r["webhook"].url}/in", secret_env: WH_SECRET}}
routes:
  default: [{{sink: chat}}, {{sink: pd}}, {{sink: og}}, {{sink: hook}}]
"""
    env = {
        "SLACK_URL": r["slack"].url + "/services/T/B/x",
        "PD_KEY": "pd-routing-key-000001",
        "OG_KEY": "genie-key-0000001",
        "WH_SECRET": "wh-secret-00000001",
    }
    # Annotations of 10,000 characters: over the default --max-label-value (8192).
    limits = Limits(max_label_value=20_000)
    state, client, service = delivery_app(config, env, limits=limits)
    service.stop()  # hold the outbox while the incident grows
    alert = make_alert(
        service="checkout-api",
        severity="critical",
        annotations={"summary": big_text("summary"), "description": big_text("description")},
    )
    resp = client.post("/alerts", json=make_webhook(alert))
    assert resp.status_code == 200, resp.text
    incident_id = resp.json()["results"][0]["incident"]
    state.store.add_findings(incident_id, big_findings(), now=datetime.now(UTC))
    service.start()
    service.wake()
    assert wait_until(lambda: all(len(s.requests) >= 1 for s in r.values()), timeout=20)
    stats = client.get("/api/stats").json()["outbox"]
    assert stats["delivered"] == 4 and stats["dead"] == 0, stats
    for kind, server in r.items():
        assert len(server.requests) == 1 and server.refused == [], kind
    assert r["pagerduty"].requests[0].json()["payload"]["source"] == "eu-1"
