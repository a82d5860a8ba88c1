"""The shipped rules: lint clean (warnings too), each has a test file whose scenarios pass,
with at least one scenario where the rule fires and one where it must not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.rules.loader import load_paths  # noqa: E402
from engine.ruletests import run_tests  # noqa: E402

RULES = ROOT / "rules.d"
RULE_FILES = sorted(
    p
    for p in RULES.glob("*.yaml")
    if not p.name.endswith(".test.yaml") and p.name != "ownership.yaml"
)
RULE_IDS = [yaml.safe_load(p.read_text())["id"] for p in RULE_FILES]
TEST_SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/rule-test.schema.json"
RULE_SCHEMA_LINE = "# yaml-language-server: $schema=../schemas/rule.schema.json"


@pytest.fixture(scope="module")
def loaded():
    return load_paths([RULES])


def test_the_shipped_rules() -> None:
    assert sorted(RULE_IDS) == [
        "container.oom_killed",
        "dependency.upstream_failing",
        "deploy.recent_correlated",
        "incident.duplicate_open",
        "leader.election_thrash",
        "logs.error_spike",
        "routing.team",
        "traces.tail_latency",
    ]


def test_shipped_rules_lint_without_errors_or_warnings(loaded) -> None:
    assert [str(p) for p in loaded.problems] == []
    assert sorted(r.id for r in loaded.ruleset.rules) == sorted(RULE_IDS)
    assert {o.service for o in loaded.ruleset.ownership} >= {"api-gateway", "checkout-api"}
    assert sorted(loaded.ruleset.tables) == ["dependencies", "ownership"]


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda p: p.stem)
def test_rule_file_layout(rule_file: Path) -> None:
    text = rule_file.read_text()
    assert text.splitlines()[0] == RULE_SCHEMA_LINE
    assert yaml.safe_load(text)["id"] == rule_file.stem  # the file is named after the rule


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_each_rule_has_a_test_file_that_fires_and_stays_quiet(rule_id: str) -> None:
    path = RULES / f"{rule_id}.test.yaml"
    assert path.is_file(), f"missing {path.name}"
    text = path.read_text()
    assert text.splitlines()[0] == TEST_SCHEMA_LINE
    doc = yaml.safe_load(text)
    assert doc["rule"] == rule_id
    firing = [t for t in doc["tests"] if t["expect"]]
    quiet = [t for t in doc["tests"] if t["expect"] == []]
    assert firing
    rule = yaml.safe_load((RULES / f"{rule_id}.yaml").read_text())
    # A `fire_when: always` rule (routing.team) fires for every alert by design.
    assert quiet or rule.get("fire_when") == "always"
    for t in firing:  # every firing scenario pins what the finding says and cites
        for exp in t["expect"]:
            assert "evidence" in exp, t["name"]
    assert any(
        {"severity", "confidence", "summary_contains", "evidence"} <= set(exp)
        for t in firing
        for exp in t["expect"]
    )


@pytest.fixture(scope="module")
def run(loaded):
    return run_tests(loaded.ruleset, list(loaded.ruleset.test_files))


def test_all_shipped_rule_tests_pass(run) -> None:
    assert run.problems == []
    failures = [f"{r.title} ({r.file}:{r.line})\n{r.diff}" for r in run.failed]
    assert not failures, "\n".join(failures)
    assert len(run.results) >= 30


@pytest.mark.parametrize(
    "title",
    [
        # the boundaries the rules are specified by
        "deploy.recent_correlated: deploy 3 minutes before the alert is HIGH",
        "deploy.recent_correlated: deploy 20 minutes before the alert is MEDIUM",
        "deploy.recent_correlated: deploy 31 minutes before is outside the 30m window",
        "deploy.recent_correlated: deploy 30 seconds after the start (within 1m) still fires",
        "deploy.recent_correlated: another service's deploy does not count",
        "logs.error_spike: 10 ERROR lines of one pattern is MEDIUM and names the pattern",
        "logs.error_spike: 4 ERROR lines stay below min_errors",
        "logs.error_spike: 50 ERROR lines is HIGH",
        "logs.error_spike: INFO lines do not count",
        "logs.error_spike: lines older than 10 minutes do not count (10 old + 4 recent lines)",
        "traces.tail_latency: p99 above 1000 ms over 5 traces fires, citing the slowest traces",
        "traces.tail_latency: only 4 traces is too few samples",
        "traces.tail_latency: p99 below the threshold does not fire",
        "incident.duplicate_open: an open incident with the same fingerprint is a duplicate (high confidence)",
        "incident.duplicate_open: an open incident of the same service and alertname is a duplicate (medium confidence)",
        "incident.duplicate_open: a resolved incident is not a duplicate",
        "routing.team: the alert's team label wins",
        "routing.team: without a team label the ownership table decides",
        "routing.team: neither label nor ownership entry routes to the default team",
    ],
)
def test_boundary_scenario_exists_and_passes(run, title: str) -> None:
    [result] = [r for r in run.results if r.title == title]
    assert result.passed, result.diff
