"""GET /metrics: Prometheus text, per-app registries, every family the issue asks for."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from engine.testing import free_port
from tests.ops.helpers import alert, bearer


def scrape(client) -> dict[str, list]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(families: dict, name: str, sample: str | None = None, **labels: str) -> float:
    for s in families[name]:
        if (sample is None or s.name == sample) and all(
            s.labels.get(k) == v for k, v in labels.items()
        ):
            return s.value
    raise AssertionError(f"no sample {name} {labels}: {families[name]}")


def test_metrics_count_alerts_incidents_findings_context_and_rules(make_app) -> None:
    app = make_app()
    c = app.client
    fired = alert(team="payments")
    assert c.post("/alerts", json=fired, headers=bearer("ingest")).status_code == 200
    assert c.post("/alerts", json=alert("Other"), headers=bearer("ingest")).status_code == 200
    resolved = {**fired, "status": "resolved", "endsAt": "2020-01-01T00:00:00Z"}
    assert c.post("/alerts", json=resolved, headers=bearer("ingest")).status_code == 200
    logs = [{"service": "checkout-api", "message": f"boom {i}"} for i in range(3)]
    assert c.post("/context/logs", json=logs, headers=bearer("ingest")).status_code == 200

    m = scrape(c)
    assert value(m, "incident_pilot_alerts_received", status="firing") == 2
    assert value(m, "incident_pilot_alerts_received", status="resolved") == 1
    assert value(m, "incident_pilot_incident_outcomes", outcome="opened") == 2
    assert value(m, "incident_pilot_incident_outcomes", outcome="resolved") == 1
    assert value(m, "incident_pilot_incident_outcomes", outcome="attached") == 0
    assert value(m, "incident_pilot_findings", rule="routing.team", severity="info") == 2
    assert value(m, "incident_pilot_context_records_ingested", kind="logs") == 3
    assert value(m, "incident_pilot_context_records_ingested", kind="deploys") == 0
    count = "incident_pilot_rule_evaluation_seconds_count"
    assert value(m, "incident_pilot_rule_evaluation_seconds", count, rule="routing.team") == 2
    assert 0 <= value(m, "incident_pilot_context_oldest_age_seconds") < 60
    assert value(m, "incident_pilot_outbox_deliveries", status="pending") == 0
    assert value(m, "incident_pilot_rules_loaded") == len(app.state.ruleset.enabled) > 0
    assert value(m, "incident_pilot_rules_last_reload_success") == 1
    assert value(m, "incident_pilot_rules_last_reload_timestamp_seconds") > 1.6e9
    assert value(m, "incident_pilot_store_up") == 1
    assert value(m, "incident_pilot_http_requests", route="/alerts", status="200") == 3
    assert "incident_pilot_rule_errors" in m and "incident_pilot_narrations" in m


def test_rule_errors_are_counted(make_app) -> None:
    app = make_app()
    rule = app.state.ruleset.enabled[0]
    metrics = app.state.metrics
    from engine.pipeline import AlertResult
    from engine.rules.evaluate import Evaluation, RuleTrace

    trace = RuleTrace(rule.id, error="ZeroDivisionError: boom", seconds=0.01)
    metrics.observe(AlertResult(None, None, Evaluation(traces=[trace])))  # type: ignore[arg-type]
    assert value(scrape(app.client), "incident_pilot_rule_errors", rule=rule.id) == 1


def test_each_app_has_its_own_registry(make_app) -> None:
    first, second = make_app(), make_app()
    first.client.post("/alerts", json=alert(), headers=bearer("ingest"))
    assert value(scrape(second.client), "incident_pilot_alerts_received", status="firing") == 0
    second.state.metrics.delivery("slack", "delivered")
    second.state.metrics.delivery("pagerduty", "dead")
    m = scrape(second.client)
    assert value(m, "incident_pilot_deliveries", sink="slack", outcome="delivered") == 1
    assert value(m, "incident_pilot_deliveries", sink="pagerduty", outcome="dead") == 1
    assert scrape(first.client)["incident_pilot_deliveries"] == []  # none counted there


def test_narration_outcomes_reach_the_apps_metrics(make_app, monkeypatch) -> None:
    """The narrator the state builds reports each outcome to that app's metrics."""
    llm = {"PROVIDER": "ollama", "MODEL": "m", "TIMEOUT": "2"}
    llm["BASE_URL"] = f"http://127.0.0.1:{free_port()}"  # nothing listens: an error
    for name, setting in llm.items():
        monkeypatch.setenv(f"INCIDENT_PILOT_LLM_{name}", setting)
    app, other = make_app(), make_app()
    r = app.client.post("/alerts", json=alert(), headers=bearer("ingest"))
    incident_id = r.json()["results"][0]["incident"]
    assert app.state.narrator is not None
    assert app.state.narrator({"id": incident_id}, "trigger") is None  # the template is sent
    assert value(scrape(app.client), "incident_pilot_narrations", outcome="error") == 1
    assert scrape(other.client)["incident_pilot_narrations"] == []


def test_metrics_open_by_default_and_read_scope_with_metrics_auth(make_app) -> None:
    from engine.server.auth import AuthSettings

    assert make_app().client.get("/metrics").status_code == 200
    locked = make_app(auth=AuthSettings(metrics_auth=True)).client
    assert locked.get("/metrics").status_code == 401
    assert locked.get("/metrics", headers=bearer("ingest")).status_code == 403
    assert locked.get("/metrics", headers=bearer("read")).status_code == 200
