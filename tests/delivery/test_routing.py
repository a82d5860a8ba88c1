"""Routing by team and severity, no second page for an attached alert, resolutions, and
secrets that never show in an API answer."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.alerts import parse_alert
from engine.delivery.config import load_config
from engine.delivery.routing import Router, make_plan
from engine.delivery.sinks.pagerduty import dedup_key
from engine.pipeline import build_draft
from engine.store import open_store
from engine.store.base import AlertOutcome
from engine.testing import make_alert, make_webhook, ts
from engine.timeutil import utcnow

from .conftest import FAST, wait_until

SECRETS = {
    "PD_KEY": "pd-default-key-secret-1",
    "PD_PAY_KEY": "pd-payments-key-secret-2",
    "OG_KEY": "opsgenie-key-secret-3",
}


def post(client: Any, *alerts: dict[str, Any]) -> list[dict[str, Any]]:
    resp = client.post("/alerts", json=make_webhook(*alerts))
    assert resp.status_code == 200, resp.text
    return list(resp.json()["results"])


def routed_config(pd_url: str, og_url: str) -> str:
    return (
        FAST.format(attempts=3)
        + f"""
sinks:
  chat-pay:
    type: slack
    webhook_url_env: SLACK_PAY
  chat-all:
    type: slack
    webhook_url_env: SLACK_ALL
  pd:
    type: pagerduty
    url: {pd_url}
    routing_key_env: PD_KEY
  og:
    type: opsgenie
    url: {og_url}
    api_key_env: OG_KEY
routes:
  default:
    - sink: chat-all
  payments:
    - sink: chat-pay
    - sink: pd
      min_severity: high
      routing_key_env: PD_PAY_KEY
  edge:
    - sink: pd
    - sink: og
      min_severity: medium
"""
    )


def setup(delivery_app: Any, standin: Any) -> tuple[Any, Any, Any, Any, Any]:
    chat, pd, og = standin(), standin(), standin()
    env = {
        **SECRETS,
        "SLACK_PAY": f"{chat.url}/services/T/B/pay-token-4",
        "SLACK_ALL": f"{chat.url}/services/T/B/all-token-5",
    }
    state, client, _ = delivery_app(routed_config(pd.url, og.url), env)
    return state, client, chat, pd, og


def settled(client: Any, count: int) -> bool:
    box = client.get("/api/stats").json()["outbox"]
    return box["delivered"] == count and box["pending"] == box["sending"] == 0


def test_routing_by_team_and_min_severity(delivery_app, standin) -> None:
    _, client, chat, pd, og = setup(delivery_app, standin)
    post(client, make_alert(service="checkout-api", team="payments", severity="critical"))
    post(client, make_alert(service="billing", team="payments", severity="warning"))
    post(client, make_alert(service="search", team="discovery", severity="critical"))
    post(client, make_alert(service="api-gateway", team="edge", severity="info"))
    assert wait_until(lambda: settled(client, 5))
    paths = sorted(r.path.rsplit("/", 1)[-1] for r in chat.requests)
    assert paths == ["all-token-5", "pay-token-4", "pay-token-4"]
    keys = sorted(r.json()["routing_key"] for r in pd.requests)
    assert keys == ["pd-default-key-secret-1", "pd-payments-key-secret-2"]  # edge / high+
    assert og.requests == []  # edge's info incident is below Opsgenie's min_severity


def test_an_attached_alert_does_not_page_again(delivery_app, standin) -> None:
    _, client, _chat, pd, _ = setup(delivery_app, standin)
    labels = {"service": "api-gateway", "team": "edge", "severity": "critical"}
    start = ts(minutes=5)
    first = post(client, make_alert(starts_at=start, **labels))[0]
    repeat = post(client, make_alert(starts_at=start, **labels))[0]
    later = post(client, make_alert(starts_at=ts(minutes=1), **labels))[0]
    outcomes = (first["outcome"], repeat["outcome"], later["outcome"])
    assert outcomes == ("opened", "repeat", "attached")
    assert wait_until(lambda: settled(client, 2))  # pd + og for the opening only
    assert len(pd.requests) == 1


def test_resolution_reaches_pagerduty_and_opsgenie(delivery_app, standin) -> None:
    _, client, _chat, pd, og = setup(delivery_app, standin)
    alert = make_alert(
        service="api-gateway", team="edge", severity="critical", starts_at=ts(minutes=5)
    )
    incident = post(client, alert)[0]["incident"]
    post(client, {**alert, "status": "resolved", "endsAt": ts()})
    assert wait_until(lambda: settled(client, 4))
    trigger, resolve = (r.json() for r in pd.requests)
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == dedup_key(incident)
    create, close = og.requests
    assert create.path == "/v2/alerts" and create.json()["alias"] == incident
    assert close.path == f"/v2/alerts/{incident}/close?identifierType=alias"


def test_resolving_by_hand_sends_the_resolution(delivery_app, standin) -> None:
    _, client, _chat, pd, _ = setup(delivery_app, standin)
    incident = post(client, make_alert(service="api-gateway", team="edge", severity="high"))[0][
        "incident"
    ]
    resp = client.post(f"/api/incidents/{incident}/resolve", json={"note": "rolled back"})
    assert resp.status_code == 200 and resp.json()["resolved"]
    assert wait_until(lambda: len(pd.requests) == 2)
    assert [r.json()["event_action"] for r in pd.requests] == ["trigger", "resolve"]


def test_no_secret_in_any_api_answer(delivery_app, standin) -> None:
    _, client, _chat, _pd, _og = setup(delivery_app, standin)
    incident = post(client, make_alert(service="api-gateway", team="edge", severity="high"))[0][
        "incident"
    ]
    wait_until(lambda: settled(client, 2))
    config = client.get("/api/config").json()
    assert config["sinks"]["pd"]["routing_key"] == "***"
    assert config["sinks"]["chat-pay"]["webhook_url"] == "***"
    assert config["routes"]["payments"][1]["routing_key"] == "***"
    answers = [
        client.get(path).text
        for path in (
            "/api/config",
            "/api/stats",
            "/api/deliveries?status=dead",
            "/api/incidents",
            f"/api/incidents/{incident}",
            "/api/rules",
        )
    ]
    blob = json.dumps(answers)
    for value in [*SECRETS.values(), "pay-token-4", "all-token-5"]:
        assert value not in blob


def test_an_attached_alert_is_printed_but_pages_nobody(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "sinks:\n  pd: {type: pagerduty, url: 'http://127.0.0.1:9', routing_key_env: PD_KEY}\n"
        "routes:\n  default: [{sink: stdout}, {sink: pd}]\n",
        "utf-8",
    )
    config, problems = load_config(path, {"PD_KEY": "k" * 32})
    assert config is not None, problems
    plan = make_plan(Router(config), {"stdout": True, "pd": True}, "http://127.0.0.1:9099")
    alert = parse_alert(make_alert(service="api-gateway", severity="critical"), "a", utcnow())
    store = open_store(":memory:")
    try:
        draft = build_draft(alert, [])
        incident = store.record_firing(
            draft, now=utcnow(), renotify_after=timedelta(hours=4)
        ).incident
    finally:
        store.close()
    quiet = plan(AlertOutcome("attached", incident, notify=False))
    assert [(d.sink, d.event) for d in quiet] == [("stdout", "update")]
    loud = plan(AlertOutcome("attached", incident, notify=True))
    assert sorted(d.sink for d in loud) == ["pd", "stdout"]
    assert plan(AlertOutcome("repeat", incident, notify=False)) == []
