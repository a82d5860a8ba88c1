"""The self-monitoring alerts (examples/prometheus/alerts.yaml): valid, unit-tested with
promtool, and built only on metrics a live server exposes (or that a named part of the
service is to add)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from engine.testing import ServerProcess

HERE = Path(__file__).resolve().parents[1] / "examples" / "prometheus"
RULES, TESTS = HERE / "alerts.yaml", HERE / "alerts.test.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian's prometheus package has it; .ci/run installs it)",
)
# Metrics the alerts use that another part of the service adds; each entry names it. The
# test below fails as soon as one of them is exposed: then drop it from here.
PENDING: dict[str, str] = {}  # none today: every metric the alerts use is exposed


def alert_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=HERE, capture_output=True, text=True, timeout=120, check=False
    )


@needs_promtool
def test_the_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@needs_promtool
def test_the_alert_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    cases = [
        case
        for test in yaml.safe_load(TESTS.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]
    for rule in alert_rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"no test fires {rule['alert']}"
        assert any(not c["exp_alerts"] for c in mine), f"no test keeps {rule['alert']} quiet"


def test_every_metric_the_alerts_use_is_exposed(tmp_path: Path) -> None:
    used = {m for rule in alert_rules() for m in re.findall(r"\bincident_pilot_\w+", rule["expr"])}
    assert used
    with ServerProcess(tmp_path, "--quiet") as server, server.client() as client:
        text = client.get("/metrics").text
    exposed: set[str] = set()
    for family in text_string_to_metric_families(text):
        exposed.add(family.name + ("_total" if family.type == "counter" else ""))
        exposed.update(s.name for s in family.samples)
    missing = sorted(used - exposed - set(PENDING))
    assert not missing, f"the alerts use metrics no server exposes: {missing}"
    landed = sorted(set(PENDING) & exposed)
    assert not landed, f"now exposed, drop them from PENDING: {landed}"
    assert set(PENDING) <= used  # no stale entries
