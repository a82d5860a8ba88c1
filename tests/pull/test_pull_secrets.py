"""A pull source (or a proxy in front of it) that echoes the request in its error answer:
the bearer token and the URL's password never reach the rule.error finding, and so never
the incident, its pages, the API or the database."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from engine.testing import make_alert, make_webhook, ts, wait_for_deliveries
from tests.pull.standin import StandIn

TOKEN = "PLANT-prometheus-bearer-9f8e7d"
PASSWORD = "PLANT-loki-password-6c5b4a"


def echo_denied(path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
    auth = {k: v for k, v in headers.items() if k.lower() == "authorization"}
    return 401, f"denied {json.dumps(auth)} for {path}?{params.get('query', '')}"


def test_an_echoed_token_or_password_is_scrubbed_from_the_finding(
    pull_app: Any, tmp_path: Path
) -> None:
    token_file = tmp_path / "prometheus-token"
    token_file.write_text(TOKEN + "\n")
    with StandIn() as prom, StandIn() as loki:
        prom.handle = echo_denied  # type: ignore[method-assign]
        loki.handle = echo_denied  # type: ignore[method-assign]
        loki_url = loki.url.replace("http://", f"http://reader:{PASSWORD}@")
        state, client = pull_app(
            prometheus_url=prom.url, prometheus_token_file=str(token_file), loki_url=loki_url
        )
        r = client.post(
            "/alerts", json=make_webhook(make_alert(service="checkout", starts_at=ts()))
        )
        incident_id = r.json()["results"][0]["incident"]
        wait_for_deliveries(state)
        incident = client.get(f"/api/incidents/{incident_id}").json()
        page = state.delivery.sinks["stdout"].stream.getvalue()
    errors = {
        f["outputs"].get("failed_rule"): f["summary"]
        for f in incident["findings"]
        if f["rule"] == "rule.error"
    }
    assert set(errors) == {"prometheus.error_ratio", "loki.error_lines"}
    for summary in errors.values():
        assert "HTTP 401" in summary and "***" in summary, summary  # echoed, and masked
    text = json.dumps(incident) + page + Path(state.settings.db).read_bytes().decode("latin-1")
    assert TOKEN not in text and PASSWORD not in text
    basic = base64.b64encode(f"reader:{PASSWORD}".encode()).decode()  # the Basic header
    assert basic not in text
