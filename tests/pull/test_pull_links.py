"""A pull rule's templates see the server's public URL too (`public_url`, `incident_url`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.paths import rules_dir
from engine.pull.config import PullSettings
from engine.rulefiles import load_rules
from engine.testing import make_alert, make_webhook, ts
from tests.pull.standin import StandIn

RULE = """\
id: p.links
description: a prometheus rule that links an incident and the service
source: prometheus
vars: {service: $alert.labels.service}
query: 'up{service=$service}'
summary: >-
  related {{ alert.labels.related | incident_url }}; all at {{ public_url }}/ui/incidents
evidence: {from: matched}
"""


def _up(path: str, params: dict[str, str]) -> dict[str, Any]:
    return {
        "resultType": "vector",
        "result": [{"metric": {"service": "checkout"}, "value": [time.time(), "1"]}],
    }


def test_pull_rule_templates_get_the_public_url(make_app: Any, tmp_path: Path) -> None:
    (tmp_path / "p.links.yaml").write_text(RULE, encoding="utf-8")
    ruleset = load_rules([rules_dir(), tmp_path])
    assert ruleset is not None
    with StandIn(_up) as prom:
        _, client = make_app(
            report="json",
            ruleset=ruleset,
            rules=(rules_dir(), tmp_path),
            pull=PullSettings(prometheus_url=prom.url),
            public_url="https://pilot.example.org/",
        )
        alert = make_alert(service="checkout", related="inc-0123456789ab", starts_at=ts())
        iid = client.post("/alerts", json=make_webhook(alert)).json()["results"][0]["incident"]
        deadline, found = time.monotonic() + 10, []
        while not found and time.monotonic() < deadline:
            findings = client.get(f"/api/incidents/{iid}").json()["findings"]
            found = [f for f in findings if f["rule"] == "p.links"]
            time.sleep(0.05)
    assert [f["summary"] for f in found] == [
        "related https://pilot.example.org/ui/incidents/inc-0123456789ab; "
        "all at https://pilot.example.org/ui/incidents"
    ]
