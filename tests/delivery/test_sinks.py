"""What each sink sends, over real HTTP to a stand-in server."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from engine.delivery.config import SinkSpec
from engine.delivery.sinks import REGISTRY
from engine.delivery.sinks.pagerduty import dedup_key

from .conftest import StandIn
from .helpers import context, make_delivery, make_incident


def sink(kind: str, name: str = "s", **options: Any) -> Any:
    secrets = {
        k: v for k, v in options.items() if k in ("webhook_url", "routing_key", "api_key", "secret")
    }
    for k in secrets:
        options.pop(k)
    return REGISTRY[kind](SinkSpec(name, kind, {"timeout": 2.0, **options}, secrets))


def test_slack_block_kit_message(standin: Callable[..., StandIn]) -> None:
    server = standin()
    url = f"{server.url}/services/T0/B0/slack-token-xyz"
    slack = sink("slack", webhook_url="env:SLACK")
    delivery = make_delivery(make_incident(), "s", options={"channel": "#payments"})
    result = slack.send(delivery, context(**{"env:SLACK": url}))
    assert result.status == "ok", result
    (req,) = server.wait_for(1)
    assert req.path == "/services/T0/B0/slack-token-xyz"
    msg = req.json()
    blocks = msg["blocks"]
    text = repr(blocks)
    assert blocks[0]["type"] == "header" and "[CRITICAL] 5xx above 5% on checkout-api" in text
    assert "*Severity*" in text and "critical" in text
    assert "*Team*\\npayments" in text
    # findings, suggestions and evidence paths; mrkdwn escaped (masked patterns survive)
    assert "timeout after &lt;num&gt;ms to db &amp; cache" in text
    assert "Check the &lt;db&gt; pool &amp; restart if &gt; 90% busy" in text
    assert "`context/logs/17`" in text and "`context/deploys/3`" in text
    assert "Roll back v2.3.1" in text
    assert "<http://incidents.example/ui/incidents/inc-0123456789ab|Open incident" in text
    assert "<num>" not in text  # nothing unescaped outside the link
    assert msg["channel"] == "#payments" and msg["text"]


def test_pagerduty_trigger_and_resolve(standin: Callable[..., StandIn]) -> None:
    server = standin()
    pd = sink("pagerduty", url=server.url, routing_key="env:PD")
    ctx = context(**{"env:PD": "pd-key-000000001"})
    inc = make_incident()
    assert pd.send(make_delivery(inc, "s"), ctx).status == "ok"
    resolved = make_incident(status="resolved")
    assert pd.send(make_delivery(resolved, "s", "resolve", id=8), ctx).status == "ok"
    trigger, resolve = server.wait_for(2)
    assert trigger.path == resolve.path == "/v2/enqueue"
    t, r = trigger.json(), resolve.json()
    assert t["event_action"] == "trigger" and t["routing_key"] == "pd-key-000000001"
    assert t["dedup_key"] == dedup_key(inc.id) == r["dedup_key"]
    assert t["payload"]["severity"] == "critical"
    details = t["payload"]["custom_details"]
    assert details["findings"][0]["evidence"] == ["context/logs/17", "context/logs/18"]
    assert details["findings"][1]["suggestion"] == "Roll back v2.3.1"
    assert t["links"][0]["href"].endswith("/ui/incidents/inc-0123456789ab")
    assert r == {
        "routing_key": "pd-key-000000001",
        "event_action": "resolve",
        "dedup_key": dedup_key(inc.id),
    }


def test_pagerduty_severity_mapping() -> None:
    from engine.delivery.sinks.pagerduty import SEVERITY

    assert SEVERITY == {
        "critical": "critical",
        "high": "error",
        "medium": "warning",
        "low": "info",
        "info": "info",
    }


def test_opsgenie_create_and_close(standin: Callable[..., StandIn]) -> None:
    server = standin()
    og = sink("opsgenie", url=server.url, api_key="env:OG", tags=["prod"])
    ctx = context(**{"env:OG": "genie-key-000001"})
    inc = make_incident()
    delivery = make_delivery(inc, "s", options={"responders": ["payments"]})
    assert og.send(delivery, ctx).status == "ok"
    assert (
        og.send(make_delivery(make_incident(status="resolved"), "s", "resolve"), ctx).status == "ok"
    )
    create, close = server.wait_for(2)
    assert create.path == "/v2/alerts"
    assert create.headers["Authorization"] == "GenieKey genie-key-000001"
    body = create.json()
    assert body["alias"] == inc.id and body["priority"] == "P1"
    assert "prod" in body["tags"] and body["responders"] == [{"name": "payments", "type": "team"}]
    assert all(isinstance(v, str) for v in body["details"].values())
    assert close.path == f"/v2/alerts/{inc.id}/close?identifierType=alias"
    assert close.headers["Authorization"] == "GenieKey genie-key-000001"


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The procedure docs/OPERATIONS.md documents, verbatim."""
    timestamp = headers["X-Incident-Pilot-Timestamp"]
    expected = (
        "sha256="
        + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    )
    return hmac.compare_digest(expected, headers["X-Incident-Pilot-Signature"])


def test_webhook_signature_verifies(standin: Callable[..., StandIn]) -> None:
    server = standin(default=None)
    hook = sink("webhook", url=f"{server.url}/hook", secret="env:WH", headers={"X-Env": "test"})
    ctx = context(**{"env:WH": "whsec-0000000001"})
    delivery = make_delivery(make_incident(), "s", id=41)
    assert hook.send(delivery, ctx).status == "ok"
    assert hook.send(delivery, ctx).status == "ok"  # a retry: same id, same body
    first, again = server.wait_for(2)
    headers = {k.title(): v for k, v in first.headers.items()}
    assert verify("whsec-0000000001", headers, first.body)
    assert not verify("wrong-secret", headers, first.body)
    assert not verify("whsec-0000000001", headers, first.body + b" ")
    assert headers["X-Incident-Pilot-Delivery"] == "inc-0123456789ab.41"
    assert again.headers["X-Incident-Pilot-Delivery"] == "inc-0123456789ab.41"
    assert again.body == first.body and headers["X-Env"] == "test"
    doc = first.json()
    assert doc["event"] == "trigger" and doc["incident"]["id"] == "inc-0123456789ab"


def test_narration_hook_replaces_the_template(standin: Callable[..., StandIn]) -> None:
    server = standin()
    hook = sink("webhook", url=server.url, secret="env:WH")
    ctx = context(**{"env:WH": "whsec-0000000001"})
    delivery = make_delivery(make_incident(), "s")
    hook.send(delivery, ctx)
    from dataclasses import replace

    hook.send(delivery, replace(ctx, narration="An LLM wrote this."))
    plain, narrated = server.wait_for(2)
    assert "5xx above 5% on checkout-api" in plain.json()["narration"]  # the template report
    assert narrated.json()["narration"] == "An LLM wrote this."
