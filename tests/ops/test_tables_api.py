"""GET /api/tables/...: the table entries a finding cites resolve through the API, with
their file:line (scope read); and a cascade posted to the live app pages once."""

from __future__ import annotations

from pathlib import Path

from engine.model import Alert
from engine.rules.evaluate import evaluate_rules
from engine.timeutil import utcnow
from tests.ops.helpers import bearer

GRAPH = """# yaml-language-server: $schema=../../schemas/table.schema.json
kind: graph
key: service
description: who calls whom
entries:
  checkout-api: [payments, inventory]
  cart: [payments]
  search: [index]
"""


def with_graph(rules_copy: Path) -> Path:
    (rules_copy / "tables" / "dependencies.yaml").write_text(GRAPH, "utf-8")
    return rules_copy


def post(client, service: str, alertname: str, pod: str = "p1") -> dict:
    body = {
        "status": "firing",
        "labels": {"alertname": alertname, "service": service, "pod": pod},
        "annotations": {"summary": f"{alertname} on {service}"},
    }
    r = client.post("/alerts", json=body, headers=bearer("ingest"))
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


def test_table_entries_answer_with_file_and_line(make_app, rules_copy: Path) -> None:
    c = make_app(rules=with_graph(rules_copy)).client
    r = c.get("/api/tables/dependencies/checkout-api", headers=bearer("read"))
    assert r.status_code == 200
    entry = r.json()
    assert entry["path"] == "tables/dependencies/checkout-api"
    assert entry["value"] == ["payments", "inventory"]
    assert entry["file"].endswith("tables/dependencies.yaml") and entry["line"] == 6
    owner = c.get("/api/tables/ownership/checkout-api", headers=bearer("read")).json()
    assert owner["value"]["team"] == "payments" and owner["file"].endswith("ownership.yaml")
    listing = c.get("/api/tables", headers=bearer("read")).json()["tables"]
    assert [(t["name"], t["kind"], t["entries"]) for t in listing] == [
        ("dependencies", "graph", 3),
        ("ownership", "keyed", 3),
    ]
    whole = c.get("/api/tables/dependencies", headers=bearer("read")).json()
    assert [e["key"] for e in whole["entries"]] == ["cart", "checkout-api", "search"]


def test_unknown_tables_and_keys_are_404_and_reading_needs_the_read_scope(
    make_app, rules_copy: Path
) -> None:
    c = make_app(rules=with_graph(rules_copy)).client
    r = c.get("/api/tables/nope/x", headers=bearer("read"))
    assert r.status_code == 404 and "no table 'nope'" in r.json()["error"]
    r = c.get("/api/tables/dependencies/nope", headers=bearer("read"))
    assert r.status_code == 404 and r.json()["field"] == "key"
    assert c.get("/api/tables/dependencies/cart", headers=bearer("ingest")).status_code == 403
    assert c.get("/api/tables/dependencies/cart").status_code == 401
    assert c.get("/api/tables/dependencies/cart", headers=bearer("admin")).status_code == 200


def test_a_cascade_through_the_app_pages_once_and_its_evidence_resolves(
    make_app, rules_copy: Path
) -> None:
    app = make_app(rules=with_graph(rules_copy))
    c = app.client
    first = post(c, "checkout-api", "HighErrorRate")  # a dependent alerts first
    assert first["outcome"] == "opened"
    post(c, "cart", "HighErrorRate")
    root = post(c, "payments", "PaymentsDown")  # the root: merges both
    assert root["outcome"] == "opened"
    late = post(c, "checkout-api", "HighLatency")  # after the root: a symptom at once
    assert (late["outcome"], late["incident"]) == ("attached", root["incident"])
    incident = c.get(f"/api/incidents/{root['incident']}", headers=bearer("read")).json()
    assert sorted((s["service"], s["alertname"]) for s in incident["symptoms"]) == [
        ("cart", "HighErrorRate"),
        ("checkout-api", "HighErrorRate"),
        ("checkout-api", "HighLatency"),
    ]
    merged = c.get(f"/api/incidents/{first['incident']}", headers=bearer("read")).json()
    assert merged["status"] == "resolved"
    assert merged["resolution"]["merged_into"] == root["incident"]
    # What the rule said about a further dependent alert: it cites the root incident and
    # the table entry that linked it, and both paths resolve through the API.
    alert = Alert("fp-x", "firing", {"alertname": "Slow", "service": "cart"}, {}, utcnow())
    evaluation = evaluate_rules(app.state.ruleset, alert, app.state.store)
    finding = next(f for f in evaluation.findings if f.rule_id == "dependency.upstream_failing")
    assert finding.outputs["symptom_of"] == root["incident"]
    paths = [e.path for e in finding.evidence]
    assert paths == [f"incidents/{root['incident']}", "tables/dependencies/cart"]
    for path in paths:
        assert c.get(f"/api/{path}", headers=bearer("read")).status_code == 200
    symptom = next(s for s in incident["symptoms"] if s["alertname"] == "HighLatency")
    assert symptom["via"] == ["tables/dependencies/checkout-api"]
    for path in symptom["via"]:
        assert c.get(f"/api/{path}", headers=bearer("read")).status_code == 200
    # One open incident: the root's (the pages are counted in tests/store/test_cascade.py).
    listed = c.get("/api/incidents?status=open", headers=bearer("read")).json()
    assert [i["id"] for i in listed["incidents"]] == [root["incident"]]
