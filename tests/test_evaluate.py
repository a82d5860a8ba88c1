"""Rule evaluation over a real in-memory store: findings, the evidence contract, template
safety and the sandbox, and the README demo (deploy 3m before; 10 ERROR lines)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.alerts import parse_alert  # noqa: E402
from engine.model import Alert, Finding, Severity  # noqa: E402
from engine.pipeline import Pipeline  # noqa: E402
from engine.rules.compiler import compile_rule  # noqa: E402
from engine.rules.evaluate import RULE_ERROR_ID, evaluate_rule, evaluate_rules  # noqa: E402
from engine.rules.loader import load_ruleset  # noqa: E402
from engine.rules.ruleset import RuleSet  # noqa: E402
from engine.store import NewContext, Store, open_store  # noqa: E402
from engine.timeutil import format_ts  # noqa: E402

RULES = ROOT / "rules.d"
CASES = ROOT / "tests" / "rule_cases"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INJECTIONS = ("{{ 7*7 }}", "{% if true %}x{% endif %}")


@pytest.fixture
def store() -> Iterator[Store]:
    s = open_store(":memory:")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    ruleset, problems = load_ruleset([RULES])
    assert not [p for p in problems if p.level == "error"], problems
    return ruleset


def alert(**labels: str) -> Alert:
    labels = {"alertname": "HighErrorRate", "service": "api-gateway", **labels}
    return parse_alert({"labels": labels, "startsAt": format_ts(NOW)}, "alert", NOW)


def deploy(ago: timedelta, service: str = "api-gateway", **fields: Any) -> NewContext:
    return NewContext(
        "deploys", service, NOW - ago, {"commit": "a39bf2c", "author": "alice", **fields}
    )


def log(ago: timedelta, message: str, level: str = "ERROR", service: str = "api-gateway"):
    return NewContext("logs", service, NOW - ago, {"level": level, "message": message})


def trace(ago: timedelta, trace_id: str, ms: float, service: str = "api-gateway"):
    return NewContext("traces", service, NOW - ago, {"trace_id": trace_id, "duration_ms": ms})


def by_rule(findings: list[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.rule_id, []).append(f)
    return out


def paths(f: Finding) -> list[str]:
    return [e.path for e in f.evidence]


def compile_doc(doc: dict[str, Any]):
    rule, problems = compile_rule(doc, file="inline.yaml")
    assert rule is not None, problems
    return rule


# --- the README demo -------------------------------------------------------------------


def test_demo_deploy_three_minutes_before_is_a_high_deploy_finding(shipped, store) -> None:
    store.add_context([deploy(timedelta(minutes=3))])
    findings = by_rule(evaluate_rules(shipped, alert(), store).findings)
    [f] = findings["deploy.recent_correlated"]
    assert f.severity is Severity.HIGH
    assert f.confidence.word == "high"
    assert f.summary.startswith("api-gateway was deployed 3m before the alert started")
    assert "commit a39bf2c by alice" in f.summary
    assert paths(f) == ["context/deploys/1"]
    assert f.evidence[0].snapshot == {
        "service": "api-gateway",
        "commit": "a39bf2c",
        "author": "alice",
        "ts": "2026-01-01T11:57:00Z",
    }
    assert RULE_ERROR_ID not in findings


def test_demo_ten_error_lines_are_a_medium_spike_naming_the_pattern(shipped, store) -> None:
    store.add_context(
        [log(timedelta(seconds=20 * i + 5), f"upstream timeout request {i}") for i in range(10)]
    )
    findings = by_rule(evaluate_rules(shipped, alert(), store).findings)
    [f] = findings["logs.error_spike"]
    assert f.severity is Severity.MEDIUM
    assert '"upstream timeout request <num>"' in f.summary
    assert f.summary.startswith("10 ERROR lines from api-gateway in the 10m before the alert")
    assert paths(f) == [f"context/logs/{i}" for i in range(1, 6)]  # the 5 newest samples
    assert f.evidence[0].snapshot["message"] == "upstream timeout request 0"


def test_demo_both_through_the_pipeline_make_a_high_incident_routed_by_ownership(
    shipped, store
) -> None:
    store.add_context(
        [deploy(timedelta(minutes=3))]
        + [log(timedelta(seconds=30 + i), f"upstream timeout request {i}") for i in range(10)]
    )
    result = Pipeline(store, lambda: shipped, clock=lambda: NOW).handle(alert())
    incident = result.outcome.incident
    assert result.outcome.kind == "opened"
    assert incident.severity is Severity.HIGH
    assert incident.team == "edge"  # rules.d/ownership.yaml: api-gateway -> edge
    assert [f.rule_id for f in incident.findings] == [
        "deploy.recent_correlated",
        "logs.error_spike",
        "routing.team",
    ]


@pytest.mark.parametrize(
    ("ago", "severity"),
    [
        (timedelta(minutes=3), "high"),
        (timedelta(minutes=10), "high"),
        (timedelta(minutes=10, seconds=1), "medium"),
        (timedelta(minutes=20), "medium"),
        (timedelta(minutes=30), "medium"),
        (timedelta(minutes=31), None),
        (-timedelta(seconds=30), "high"),  # after the start, inside `after: 1m`
        (-timedelta(seconds=61), None),
    ],
)
def test_deploy_window_and_ladder(shipped, store, ago: timedelta, severity: str | None) -> None:
    store.add_context([deploy(ago)])
    rule = shipped.by_id("deploy.recent_correlated")
    finding, trace_ = evaluate_rule(rule, alert(), store)
    if severity is None:
        assert finding is None
        assert trace_.reason == "fire_when: count (0) at_least 1"
    else:
        assert finding is not None and finding.severity.word == severity


def test_traces_cite_the_slowest_trace_ids(shipped, store) -> None:
    durations = [120, 1500, 250, 1200, 90]
    store.add_context(
        [trace(timedelta(minutes=i + 1), f"t{i}", ms) for i, ms in enumerate(durations)]
    )
    finding, _ = evaluate_rule(shipped.by_id("traces.tail_latency"), alert(), store)
    assert finding is not None
    assert [e.snapshot["trace_id"] for e in finding.evidence] == ["t1", "t3", "t2", "t0", "t4"]
    assert set(finding.evidence[0].snapshot) == {"trace_id", "duration_ms", "ts"}


def test_explain_trace_counts_fetched_and_matched(shipped, store) -> None:
    store.add_context(
        [log(timedelta(minutes=1), f"upstream timeout request {i}") for i in range(3)]
        + [log(timedelta(minutes=1), "GET /healthz", level="INFO")]
    )
    finding, trace_ = evaluate_rule(shipped.by_id("logs.error_spike"), alert(), store)
    assert finding is None
    assert (trace_.fetched, trace_.matched, trace_.fired) == (4, 3, False)
    assert trace_.reason == "fire_when: count (3) at_least $params.min_errors = 5"


# --- the evidence contract -------------------------------------------------------------


@pytest.fixture(scope="module")
def with_broken() -> RuleSet:
    ruleset, problems = load_ruleset([RULES, CASES / "broken"])
    assert not [p for p in problems if p.level == "error"], problems  # they lint clean
    return ruleset


BROKEN = {
    "cases.empty_evidence": (
        "cases.empty_evidence.yaml",
        "the rule fired but its evidence came out empty; the finding was not emitted",
    ),
    "cases.divide_by_zero": ("cases.divide_by_zero.yaml", "ZeroDivisionError: division by zero"),
    "cases.index_empty": ("cases.index_empty.yaml", "template error: "),
}


def test_broken_rules_become_low_rule_errors_and_the_others_still_fire(with_broken, store) -> None:
    store.add_context([deploy(timedelta(minutes=3))])
    evaluation = evaluate_rules(with_broken, alert(), store)
    findings = by_rule(evaluation.findings)
    # the good rules' findings arrive
    assert findings["deploy.recent_correlated"][0].severity is Severity.HIGH
    assert findings["routing.team"][0].outputs == {"team": "edge"}
    # the broken rules' own findings never do
    assert not set(BROKEN) & set(findings)
    errors = {f.outputs["failed_rule"]: f for f in findings[RULE_ERROR_ID]}
    assert set(errors) == set(BROKEN)
    for rule_id, (file_name, message) in BROKEN.items():
        f = errors[rule_id]
        assert f.severity is Severity.LOW
        assert f.summary.startswith(f"Rule {rule_id} (")
        assert file_name in f.summary
        assert message in f.summary
        [ev] = f.evidence
        assert ev.path == f"rules/{rule_id}"
        assert ev.snapshot["rule"] == rule_id
        assert ev.snapshot["file"].endswith(f"tests/rule_cases/broken/{file_name}")
        assert message in ev.snapshot["error"]
    traces = {t.rule_id: t for t in evaluation.traces}
    assert traces["cases.divide_by_zero"].error == "ZeroDivisionError: division by zero"
    assert not traces["cases.divide_by_zero"].fired


def test_rule_errors_do_not_raise_the_incident_severity(with_broken, store) -> None:
    result = Pipeline(store, lambda: with_broken, clock=lambda: NOW).handle(alert(severity="info"))
    incident = result.outcome.incident
    assert {f.rule_id for f in incident.findings} >= {RULE_ERROR_ID, "routing.team"}
    assert incident.severity is Severity.INFO  # only rule errors (LOW) and routing (INFO)


def test_the_broken_rule_works_when_its_data_is_there(with_broken, store) -> None:
    store.add_context([log(timedelta(minutes=5), "disk full")])
    finding, trace_ = evaluate_rule(with_broken.by_id("cases.empty_evidence"), alert(), store)
    assert finding is not None and finding.rule_id == "cases.empty_evidence"
    assert paths(finding) == ["context/logs/1"]
    assert trace_.error is None


def test_evidence_when_filters_items_and_duplicates_collapse(store) -> None:
    rule = compile_doc(
        {
            "id": "t.evidence",
            "description": "d",
            "source": "deploys",
            "window": {"before": "30m"},
            "aggregate": {"last": "latest", "first": "earliest"},
            "params": {"limit": 2},
            "summary": "{{ count }}",
            "evidence": [
                {"from": "last"},
                {"from": "matched", "limit": 2, "fields": ["commit"]},
                {"alert": "labels.service"},
                {"alert": "labels.absent"},  # absent: cites nothing
                {"param": "limit", "when": {"count": {"above": 5}}},
            ],
        }
    )
    store.add_context([deploy(timedelta(minutes=m), commit=f"c{m}") for m in (1, 2, 3)])
    finding, _ = evaluate_rule(rule, alert(), store)
    # `last` cites deploys/1; `matched` (newest first, limit 2) adds deploys/2 only
    assert paths(finding) == ["context/deploys/1", "context/deploys/2", "alert/labels/service"]
    assert finding.evidence[0].snapshot["author"] == "alice"  # the first citation's snapshot
    assert finding.evidence[1].snapshot == {"commit": "c2"}
    assert finding.evidence[2].snapshot == {"labels.service": "api-gateway"}


# --- template safety and the sandbox ---------------------------------------------------


def test_data_is_never_rendered_as_a_template(store) -> None:
    ruleset, problems = load_ruleset([CASES / "safe"])
    assert not [p for p in problems if p.level == "error"], problems
    text = " ".join(INJECTIONS)
    a = parse_alert(
        {
            "labels": {"alertname": "X", "service": "api-gateway", "note": text},
            "annotations": {"runbook": "{{ params }}"},
            "startsAt": format_ts(NOW),
        },
        "alert",
        NOW,
    )
    store.add_context([log(timedelta(minutes=1), f"boom {text}")])
    [f] = evaluate_rules(ruleset, a, store).findings
    assert f.rule_id == "cases.echo"
    assert f.summary == f"note={text} message=boom {text}"
    assert f.suggestion == "annotation={{ params }}"
    assert "49" not in f.summary


def test_injection_through_a_shipped_rule_comes_out_verbatim(shipped, store) -> None:
    store.add_context([deploy(timedelta(minutes=3), author=INJECTIONS[0], commit=INJECTIONS[1])])
    finding, _ = evaluate_rule(shipped.by_id("deploy.recent_correlated"), alert(), store)
    assert f"commit {INJECTIONS[1]} by {INJECTIONS[0]}" in finding.summary
    assert f"Check what commit {INJECTIONS[1]} changed" in finding.suggestion


SANDBOX = {
    "cases.sandbox_mro": "access to attribute '__class__' of 'str' object is unsafe",
    "cases.sandbox_globals": "access to attribute '__init__' of 'type' object is unsafe",
}


def test_lint_rejects_sandbox_escapes() -> None:
    ruleset, problems = load_ruleset([CASES / "sandbox"])
    errors = {p.rule_id: p for p in problems if p.level == "error"}
    assert set(errors) == set(SANDBOX)
    for rule_id, message in SANDBOX.items():
        assert message in errors[rule_id].message
        assert errors[rule_id].key_path == ("summary",)
        assert errors[rule_id].location.line == 6
    assert ruleset.rules == ()  # rules with errors are left out


def test_sandbox_escapes_fail_safely_at_run_time(store) -> None:
    ruleset, _ = load_ruleset([CASES / "sandbox"], render_check=False)
    assert {r.id for r in ruleset.rules} == set(SANDBOX)
    findings = evaluate_rules(ruleset, alert(), store).findings
    assert [f.rule_id for f in findings] == [RULE_ERROR_ID, RULE_ERROR_ID]
    for f in findings:
        assert f.severity is Severity.LOW
        assert "template error: access to attribute" in f.summary
        assert "is unsafe" in f.summary
        assert f.outputs["failed_rule"] in SANDBOX


@pytest.mark.parametrize(
    "template",
    [
        "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
        "{{ joiner.__init__.__globals__.os.system('touch MARKER') }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}{{ lipsum.__globals__['os'].system('touch MARKER') }}",
        "{{ alert.labels.__class__.__init__.__globals__ }}{{ namespace.__init__.__globals__.os.system('touch MARKER') }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{% set x = alert.labels.update({'a': 'b'}) %}{{ x }}",  # immutable sandbox: no mutation
    ],
)
def test_no_code_runs_from_a_hostile_template(store, tmp_path: Path, template: str) -> None:
    marker = tmp_path / "pwned"
    rule = compile_doc(
        {
            "id": "t.hostile",
            "description": "d",
            "source": "alert",
            "fire_when": "always",
            "summary": template.replace("MARKER", str(marker)),
            "evidence": {"alert": "labels.alertname"},
        }
    )
    a = alert()
    finding, trace_ = evaluate_rule(rule, a, store)
    assert finding.rule_id == RULE_ERROR_ID
    assert finding.severity is Severity.LOW
    assert trace_.error is not None
    assert not marker.exists()
    assert a.labels == {"alertname": "HighErrorRate", "service": "api-gateway"}


def test_an_undefined_name_is_a_lint_error_with_file_and_line() -> None:
    path = CASES / "undefined" / "cases.undefined_name.yaml"
    ruleset, problems = load_ruleset([path.parent])
    [error] = [p for p in problems if p.level == "error"]
    expected_line = next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if "lst.author" in line
    )
    assert error.code == "template-undefined"
    assert error.rule_id == "cases.undefined_name"
    assert "'lst' is undefined" in error.message
    assert error.location.path.endswith("tests/rule_cases/undefined/cases.undefined_name.yaml")
    assert error.location.line == expected_line
    assert f"cases.undefined_name.yaml:{expected_line}:" in str(error)
    assert ruleset.rules == ()


def test_strict_undefined_also_applies_at_run_time(store) -> None:
    # An alert label that may be absent: `is defined` guards it; a bare use fails the rule.
    guarded = compile_doc(
        {
            "id": "t.guarded",
            "description": "d",
            "source": "alert",
            "fire_when": "always",
            "summary": "{% if alert.labels.team is defined %}{{ alert.labels.team }}{% else %}none{% endif %}",
            "evidence": {"alert": "labels.alertname"},
        }
    )
    bare = compile_doc(
        {
            "id": "t.bare",
            "description": "d",
            "source": "alert",
            "fire_when": "always",
            "summary": "team {{ alert.labels.team }}",
            "evidence": {"alert": "labels.alertname"},
        }
    )
    finding, _ = evaluate_rule(guarded, alert(), store)
    assert finding.summary == "none"
    finding, _ = evaluate_rule(bare, alert(), store)
    assert finding.rule_id == RULE_ERROR_ID
    assert "'dict object' has no attribute 'team'" in finding.summary


@pytest.mark.parametrize(
    ("expr", "value", "expected"),
    [
        ("percent", 0.5, "50%"),
        ("percent(1)", 0.125, "12.5%"),
        ("duration", 5400, "1h30m"),
        ("duration", 0.25, "250ms"),
        ("relative", 180, "3m before"),
        ("relative", -30, "30s after"),
        ("relative", 0.2, "at the same moment as"),
        ("shortsha", "a39bf2c1d2e3f4", "a39bf2c"),
        ("shortsha(4)", "a39bf2c1d2e3f4", "a39b"),
        ("ms", 250, "250 ms"),
        ("ms", 12500, "12.50 s"),
        ("percent", "n/a", "n/a"),
    ],
)
def test_filters(store, expr: str, value: Any, expected: str) -> None:
    rule = compile_doc(
        {
            "id": "t.filters",
            "description": "d",
            "source": "alert",
            "params": {"v": value},
            "fire_when": "always",
            "summary": "{{ params.v | " + expr + " }}",
            "evidence": {"param": "v"},
        }
    )
    finding, _ = evaluate_rule(rule, alert(), store)
    assert finding.summary == expected


# --- the window of an `incidents` rule ---------------------------------------------------


@pytest.mark.parametrize(
    "match",
    [
        {"status": {"equals": "open"}},  # the store's capped newest-first read
        {"service": {"equals": "$alert.labels.service"}},  # a narrow push-down: no cap
        {"title": {"contains": "spike"}},  # nothing pushed down at all
    ],
    ids=["status", "service", "python-only"],
)
def test_incidents_window_keeps_both_bounds(store, match: dict[str, Any]) -> None:
    """window {before: 30m, after: 5m}: an incident opened 31m before the alert's start or
    6m after it is outside; 29m before and 4m after are inside. Ignoring `before` (the
    store's `since`) brings in the first, ignoring `after` the last."""
    from engine.scenario import Scenario

    rule = compile_doc(
        {
            "id": "t.incidents_window",
            "description": "d",
            "source": "incidents",
            "window": {"before": "30m", "after": "5m"},
            "match": match,
            "summary": "{{ count }}",
            "evidence": {"from": "matched"},
        }
    )
    opened = {"inc-31m-before": "-31m", "inc-29m-before": "-29m", "inc-4m-after": "+4m"}
    opened["inc-6m-after"] = "+6m"
    Scenario.from_dict(
        {
            "alert": {"labels": {"alertname": "x"}},
            "incidents": [
                {
                    "id": iid,
                    "labels": {"alertname": f"Spike{n}", "service": "api-gateway"},
                    "title": f"error spike {n}",
                    "opened": when,
                }
                for n, (iid, when) in enumerate(opened.items())
            ],
        },
        now=NOW,
    ).load_into(store)
    finding, trace_ = evaluate_rule(rule, alert(), store)
    assert finding is not None, trace_
    assert sorted(paths(finding)) == ["incidents/inc-29m-before", "incidents/inc-4m-after"]
