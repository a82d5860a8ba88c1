"""The incidents API, stats, health, rules, evidence paths and narration (in process)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from engine.testing import make_alert, printed, ts
from engine.timeutil import format_ts, parse_ts, utcnow


def post_alert(api, body):
    r = api.post("/alerts", json=body)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["incident"]


def seed_demo(api):
    """The Go README demo in process: a deploy 3 minutes ago, 10 ERROR lines, the alert."""
    api.post(
        "/context/deploys",
        json={
            "service": "api-gateway",
            "commit": "a39bf2c",
            "author": "alice",
            "when": ts(minutes=3),
        },
    )
    api.post(
        "/context/logs",
        json=[
            {"service": "api-gateway", "level": "ERROR", "message": f"upstream timeout request {i}"}
            for i in range(1, 11)
        ],
    )
    return post_alert(
        api,
        make_alert(
            service="api-gateway",
            severity="warning",
            team="edge",
            annotations={"summary": "5xx rate above 5% on api-gateway"},
        ),
    )


def test_healthz(api):
    r = api.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_get_incident_full_shape(api):
    incident_id = seed_demo(api)
    inc = api.get(f"/api/incidents/{incident_id}").json()
    assert set(inc) == {
        "id", "path", "status", "title", "severity", "service", "alertname", "team",
        "fingerprint", "opened_at", "last_seen", "resolved_at", "repeat_count",
        "attached_count", "resolution", "symptoms", "alert", "findings", "narration",
    }  # fmt: skip
    assert inc["path"] == f"incidents/{incident_id}"
    assert (inc["status"], inc["severity"], inc["team"]) == ("open", "high", "edge")
    assert inc["title"] == "5xx rate above 5% on api-gateway"
    by_rule = {f["rule"]: f for f in inc["findings"]}
    assert by_rule["deploy.recent_correlated"]["severity"] == "high"
    assert by_rule["logs.error_spike"]["severity"] == "medium"
    assert set(by_rule["logs.error_spike"]) == {
        "rule", "severity", "confidence", "summary", "suggestion", "evidence", "outputs",
    }  # fmt: skip
    assert parse_ts(inc["opened_at"]) <= utcnow()


def test_every_evidence_path_resolves(api):
    incident_id = seed_demo(api)
    inc = api.get(f"/api/incidents/{incident_id}").json()
    paths = [e["path"] for f in inc["findings"] for e in f["evidence"]]
    assert any(p.startswith("context/deploys/") for p in paths)
    assert sum(p.startswith("context/logs/") for p in paths) == 5
    for finding in inc["findings"]:
        for e in finding["evidence"]:
            assert_evidence_resolves(api, inc, e)


def assert_evidence_resolves(api, inc, evidence):
    path = evidence["path"]
    if path.startswith("context/"):
        r = api.get(f"/api/{path}")
        assert r.status_code == 200, (path, r.text)
        record = r.json()
        assert record["path"] == path
        for key, value in evidence["snapshot"].items():
            assert record.get(key) == value, (path, key)
    elif path.startswith("incidents/"):
        r = api.get(f"/api/{path}")
        assert r.status_code == 200, (path, r.text)
    elif path.startswith("alert/"):
        node = inc["alert"]
        for part in path.split("/")[1:]:
            node = node[part]
        assert node is not None, path
    elif path.startswith("rules/"):
        _, rule_id, _params, _name = path.split("/")
        assert rule_id in {r["id"] for r in api.get("/api/rules").json()["rules"]}
    else:
        pytest.fail(f"evidence path {path!r} resolves through no API")


def test_duplicate_finding_cites_an_incident_that_resolves(make_app):
    state, api = make_app()
    seen = []
    state.listeners.append(seen.append)
    first = post_alert(api, make_alert(service="checkout-api", pod="a"))
    assert post_alert(api, make_alert(service="checkout-api", pod="b")) == first
    # The attached alert's own findings are not stored; its evaluation is in the result.
    [dup] = [f for f in seen[-1].evaluation.findings if f.rule_id == "incident.duplicate_open"]
    assert dup.outputs["duplicate_of"] == first
    assert [e.path for e in dup.evidence] == [f"incidents/{first}"]
    inc = api.get(f"/api/incidents/{first}").json()
    assert_evidence_resolves(api, inc, dup.evidence[0].to_dict())


def test_list_filters(api):
    a = post_alert(api, make_alert(service="checkout-api", team="payments"))
    b = post_alert(api, make_alert(service="search", alertname="PodCrashLooping"))
    c = post_alert(api, make_alert(service="api-gateway", alertname="Latency", team="edge"))
    api.post(f"/api/incidents/{b}/resolve")

    def ids(query=""):
        r = api.get(f"/api/incidents{query}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == len(body["incidents"])
        return [i["id"] for i in body["incidents"]]

    assert ids() == [c, b, a]  # newest first
    assert ids("?limit=2") == [c, b]
    assert ids("?status=open") == [c, a]
    assert ids("?status=resolved") == [b]
    assert ids("?service=checkout-api") == [a]
    assert ids("?team=edge") == [c]
    assert ids("?team=discovery") == [b]  # from ownership.yaml
    assert ids("?service=nope") == []
    assert ids(f"?since={format_ts(utcnow() + timedelta(seconds=1))}") == []
    assert ids(f"?since={format_ts(utcnow() - timedelta(minutes=1))}") == [c, b, a]
    assert ids("?status=open&team=payments&service=checkout-api") == [a]


def test_list_summary_shape(api):
    seed_demo(api)
    [summary] = api.get("/api/incidents").json()["incidents"]
    assert "alert" not in summary and "narration" not in summary
    assert set(summary["findings"][0]) == {"rule", "severity", "summary"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=" + "9" * 5000, "limit"),
        ("status=closed", "status"),
        ("since=yesterday", "since"),
        ("since=2026-02-30T00:00:00Z", "since"),
        ("service=" + "x" * 300, "service"),
        ("team=a%00b", "team"),
    ],
)
def test_list_query_errors(api, query, field):
    r = api.get(f"/api/incidents?{query}")
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field


def test_get_unknown_and_invalid_ids(api):
    r = api.get("/api/incidents/inc-000000000000")
    assert r.status_code == 404 and r.json() == {
        "error": "no incident inc-000000000000",
        "field": "id",
    }
    assert api.get("/api/incidents/" + "a" * 65).status_code == 400
    assert api.get("/api/incidents/a%20b").json()["field"] == "id"
    assert api.get("/api/context/logs/%D9%A1").status_code == 400  # Arabic-Indic digit one
    assert api.get("/api/context/logs/" + "9" * 20).status_code == 400
    # 19 digits but past a 64-bit id: not found, not a server error
    assert api.get(f"/api/context/logs/{2**63}").status_code == 404
    assert api.get("/api/context/logs/" + "9" * 19).status_code == 404
    assert api.get("/api/context/spans/1").status_code == 404


def test_resolve_by_hand_with_a_note(make_app):
    state, api = make_app(report="json")
    incident_id = post_alert(api, make_alert(service="checkout-api"))
    r = api.post(f"/api/incidents/{incident_id}/resolve", json={"note": "rolled back a39bf2c"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resolved"] is True
    inc = body["incident"]
    assert inc["status"] == "resolved"
    assert inc["resolution"]["auto"] is False
    assert inc["resolution"]["note"] == "rolled back a39bf2c"
    assert inc["resolved_at"] == inc["resolution"]["at"]
    assert api.get(f"/api/incidents/{incident_id}").json() == inc
    again = api.post(f"/api/incidents/{incident_id}/resolve")
    assert again.status_code == 200 and again.json()["resolved"] is False
    events = [json.loads(x)["event"] for x in printed(state).splitlines()]
    assert events == ["opened", "resolved"]
    stats = api.get("/api/stats").json()
    assert stats["since_start"]["outcome_resolved_by_hand"] == 1


def test_resolve_without_a_body_and_its_errors(api):
    incident_id = post_alert(api, make_alert(service="checkout-api"))
    assert api.post(f"/api/incidents/{incident_id}/resolve", content=b"").json()["resolved"]
    other = post_alert(api, make_alert(service="search"))
    r = api.post(f"/api/incidents/{other}/resolve", json={"note": 5})
    assert (r.status_code, r.json()["field"]) == (400, "note")
    r = api.post(f"/api/incidents/{other}/resolve", json=["note"])
    assert r.status_code == 400
    r = api.post(
        f"/api/incidents/{other}/resolve",
        content="<note/>",
        headers={"content-type": "application/xml"},
    )
    assert r.status_code == 415
    r = api.post(f"/api/incidents/{other}/resolve", json={"note": "x" * 70_000})
    assert r.status_code == 413
    assert api.get(f"/api/incidents/{other}").json()["status"] == "open"
    r = api.post("/api/incidents/inc-nope/resolve")
    assert (r.status_code, r.json()["field"]) == (404, "id")


def test_stats_shape_and_counts(api, am_fixture):
    seed_demo(api)
    api.post("/alerts", json=am_fixture("firing"))
    api.post("/alerts", json=am_fixture("firing"))
    api.post("/alerts", json=am_fixture("resolved"))
    stats = api.get("/api/stats").json()
    assert set(stats) == {
        "uptime_seconds", "rules_loaded", "since_start", "alerts", "incidents", "context",
        "outbox", "dead_letters",
    }  # fmt: skip
    assert stats["dead_letters"] == []
    assert stats["rules_loaded"] == 8
    assert stats["alerts"] == {"firing": 1, "resolved": 1, "total": 2}
    assert stats["incidents"] == {
        "open": 1, "resolved": 1, "total": 2, "repeats": 1, "attached": 0,
    }  # fmt: skip
    assert stats["context"] == {"deploys": 1, "logs": 10, "traces": 0}
    assert stats["since_start"]["alerts_firing"] == 3
    assert stats["since_start"]["outcome_repeat"] == 1


def test_rules_listing(api):
    rules = api.get("/api/rules").json()["rules"]
    assert {r["id"] for r in rules} >= {
        "deploy.recent_correlated",
        "logs.error_spike",
        "incident.duplicate_open",
        "routing.team",
        "traces.tail_latency",
    }
    assert set(rules[0]) == {"id", "enabled", "source", "file", "description"}


def test_method_not_allowed_and_unknown_paths_are_json(api):
    r = api.request("DELETE", "/api/incidents")
    assert r.status_code == 405 and "error" in r.json()
    r = api.get("/nope")
    assert r.status_code == 404 and "error" in r.json()


# --- narration ---------------------------------------------------------------------------


def test_text_report_is_plain_off_a_terminal(make_app):
    state, api = make_app(report="text")
    incident_id = seed_demo(api)
    out = printed(state)
    assert "\x1b[" not in out
    assert f"[HIGH] 5xx rate above 5% on api-gateway  ({incident_id}, opened)" in out
    assert "HIGH deploy.recent_correlated" in out
    assert "MEDIUM logs.error_spike" in out
    assert "evidence: context/deploys/1" in out


def test_text_report_is_coloured_on_a_terminal():
    import io

    from engine.narrate import StdoutReporter

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert StdoutReporter("text", Tty()).colour is True
    assert StdoutReporter("text", io.StringIO()).colour is False
    assert StdoutReporter("json", Tty()).colour is False


def test_json_report_is_one_object_per_line(make_app):
    state, api = make_app(report="json")
    incident_id = seed_demo(api)
    [line] = printed(state).splitlines()
    event = json.loads(line)
    assert event["event"] == "opened"
    assert event["incident"] == api.get(f"/api/incidents/{incident_id}").json()
