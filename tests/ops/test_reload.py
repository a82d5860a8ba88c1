"""Hot reload: POST /-/reload and SIGHUP swap the rules only when the new set is clean."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.helpers import alert, bearer

NEW_RULE = """\
id: ops.canary
description: Fires on every alert; proves a reload took effect.
source: alert
fire_when: always
severity: low
summary: canary saw {{ alert.labels.alertname }}
evidence: {alert: labels.alertname}
"""
NEW_TEST = """\
rule: ops.canary
tests:
  - name: fires
    alert: {labels: {alertname: A, service: s}}
    expect: [{summary_contains: canary saw A}]
"""
BROKEN_RULE = """\
id: ops.broken
source: logs
window: {before: 10m}
severity: loud
summary: "{{ count "
"""


def rules_fired(client, name: str) -> set[str]:
    """Post a new alert (its own service: no duplicate to attach to); the rules that fired."""
    r = client.post("/alerts", json=alert(name, service=name), headers=bearer("ingest"))
    assert r.status_code == 200, r.text
    incident = client.get(
        f"/api/incidents/{r.json()['results'][0]['incident']}", headers=bearer("read")
    )
    return {f["rule"] for f in incident.json()["findings"]}


def reload_metric(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "incident_pilot_rules_last_reload_success":
            return family.samples[0].value
    raise AssertionError("no reload metric")


def test_broken_reload_keeps_the_old_rules(make_app, rules_copy: Path) -> None:
    app = make_app(rules=rules_copy)
    c = app.client
    before = app.state.ruleset
    assert "routing.team" in rules_fired(c, "First")
    (rules_copy / "ops.broken.yaml").write_text(BROKEN_RULE)
    r = c.post("/-/reload", headers=bearer("admin"))
    assert r.status_code == 422
    body = r.json()
    assert body["reloaded"] is False and body["problems"]
    assert any("ops.broken.yaml:" in p and p.split(":")[1].isdigit() for p in body["problems"])
    assert app.state.ruleset is before
    assert "routing.team" in rules_fired(c, "Second")
    assert reload_metric(c.get("/metrics").text) == 0


def test_valid_reload_fires_the_new_rule_on_the_next_alert(make_app, rules_copy: Path) -> None:
    app = make_app(rules=rules_copy)
    c = app.client
    assert "ops.canary" not in rules_fired(c, "First")
    (rules_copy / "ops.canary.yaml").write_text(NEW_RULE)
    (rules_copy / "ops.canary.test.yaml").write_text(NEW_TEST)
    r = c.post("/-/reload", headers=bearer("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["reloaded"] is True and r.json()["rules"] == len(app.state.ruleset.enabled)
    assert "ops.canary" in rules_fired(c, "Second")
    assert "ops.canary" in {
        rule["id"] for rule in c.get("/api/rules", headers=bearer("read")).json()["rules"]
    }
    assert reload_metric(c.get("/metrics").text) == 1


def test_sighup_reloads_a_running_server(server_factory, rules_copy: Path) -> None:
    server = server_factory("--rules", str(rules_copy))

    def rules() -> set[str]:
        r = httpx.get(server.url + "/api/rules", headers=bearer("read"))
        return {rule["id"] for rule in r.json()["rules"]}

    assert "ops.canary" not in rules()
    (rules_copy / "ops.broken.yaml").write_text(BROKEN_RULE)
    server.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while "rule reload failed" not in server.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "rule reload failed" in server.stderr_text()
    assert "ops.broken.yaml:" in server.stderr_text()
    assert reload_metric(httpx.get(server.url + "/metrics").text) == 0
    (rules_copy / "ops.broken.yaml").unlink()
    (rules_copy / "ops.canary.yaml").write_text(NEW_RULE)
    server.send_signal(signal.SIGHUP)
    while "ops.canary" not in rules() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "ops.canary" in rules()
    assert server.proc is not None and server.proc.poll() is None
