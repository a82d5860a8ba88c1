"""A pull rule that overruns its budget, or fails, is counted in /metrics by rule (what
the self-monitoring alerts in examples/prometheus/alerts.yaml watch)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine.testing import AppClient, make_alert, make_webhook, ts, wait_for_deliveries
from tests.pull.standin import StandIn


def samples(client: AppClient, name: str) -> dict[str, float]:
    """rule label -> value of the counter `name` (its `_total` sample)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == f"{name}_total":
                out[s.labels["rule"]] = s.value
    return out


def test_an_overrun_and_a_failed_pull_are_counted_by_rule(pull_app: Any) -> None:
    budget = 0.5
    with StandIn(delay=2.0) as prom, StandIn() as loki:
        loki.handle = lambda path, params, headers: (400, "parse error")  # type: ignore[method-assign]
        state, client = pull_app(
            prometheus_url=prom.url, loki_url=loki.url, budget=timedelta(seconds=budget)
        )
        before = samples(client, "incident_pilot_rule_budget_overruns")
        assert before.get("prometheus.error_ratio", 0.0) == 0.0
        for service in ("checkout", "search"):
            r = client.post(
                "/alerts", json=make_webhook(make_alert(service=service, starts_at=ts()))
            )
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        overruns: dict[str, float] = {}
        while time.monotonic() < deadline:
            overruns = samples(client, "incident_pilot_rule_budget_overruns")
            if overruns.get("prometheus.error_ratio") == 2.0:
                break
            time.sleep(0.05)
        wait_for_deliveries(state)
    assert overruns == {"prometheus.error_ratio": 2.0}  # the one that answered late, only
    errors = samples(client, "incident_pilot_rule_errors")
    assert errors.get("loki.error_lines") == 2.0  # the one its source refused
    assert "prometheus.error_ratio" not in errors  # an overrun is not counted twice
