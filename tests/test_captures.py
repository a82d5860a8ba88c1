"""Captures (regex named groups on matched records), the `dominant` and `count_distinct`
aggregations, size comparisons, and the lint error for a list compared with a number."""

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
from engine.model import Alert  # noqa: E402
from engine.rules.compiler import compile_rule  # noqa: E402
from engine.rules.evaluate import RULE_ERROR_ID, evaluate_rule  # noqa: E402
from engine.store import NewContext, Store, open_store  # noqa: E402
from engine.timeutil import format_ts  # noqa: E402

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
KILLED = r"Killed process (?P<pid>\d+) \((?P<process>[^)]+)\)"


@pytest.fixture
def store() -> Iterator[Store]:
    s = open_store(":memory:")
    try:
        yield s
    finally:
        s.close()


def alert(service: str = "checkout-api") -> Alert:
    labels = {"alertname": "HighErrorRate", "service": service}
    return parse_alert({"labels": labels, "startsAt": format_ts(NOW)}, "alert", NOW)


def log(minutes: int, message: str, service: str = "checkout-api", **attributes: str):
    fields: dict[str, Any] = {"level": "WARN", "message": message, "attributes": attributes}
    return NewContext("logs", service, NOW - timedelta(minutes=minutes), fields)


def rule_doc(**extra: Any) -> dict[str, Any]:
    return {
        "id": "demo.captures",
        "description": "captures",
        "source": "logs",
        "window": {"before": "15m"},
        "match": {
            "service": {"equals": "$alert.labels.service"},
            "message": {"matches": "(?i)out of memory|oomkilled"},
        },
        "capture": {"message": KILLED},
        "aggregate": {"killed": {"dominant": "captured.process"}},
        "summary": "{{ killed.value }} killed {{ killed.count }} of {{ count }} times",
        "evidence": {"from": "killed"},
        **extra,
    }


def compiled(doc: dict[str, Any]):
    rule, problems = compile_rule(doc, file="inline.yaml")
    assert rule is not None, problems
    return rule


def problems_of(doc: dict[str, Any]) -> list[tuple[tuple, str]]:
    _, problems = compile_rule(doc, file="inline.yaml")
    return [(p.key_path, p.message) for p in problems if p.level == "error"]


def test_the_dominant_captured_value_names_the_process_and_cites_its_records(store) -> None:
    store.add_context(
        [
            log(9, "Out of memory: Killed process 4242 (java)"),
            log(7, "Out of memory: Killed process 4311 (java)"),
            log(5, "Out of memory: Killed process 77 (python3)"),
            log(3, "container checkout OOMKilled"),  # counts, captures nothing
        ]
    )
    finding, trace = evaluate_rule(compiled(rule_doc()), alert(), store)
    assert finding is not None and finding.rule_id == "demo.captures", trace
    assert finding.summary == "java killed 2 of 4 times"
    # the records that carry the value are the evidence, each with what was captured
    assert [e.path for e in finding.evidence] == ["context/logs/2", "context/logs/1"]
    assert finding.evidence[0].snapshot["captured"] == {"pid": "4311", "process": "java"}


def test_captures_read_only_matched_records_and_never_change_the_stored_ones(store) -> None:
    store.add_context(
        [
            log(4, "container checkout OOMKilled"),
            log(3, "Out of memory: Killed process 9 (indexer)", service="search"),
            log(2, "Killed process 99 (cron) by the supervisor"),  # not an OOM line
        ]
    )
    doc = rule_doc(
        summary="{{ count }} kills; process {{ killed.value }}",
        evidence={"from": "matched"},
    )
    finding, _ = evaluate_rule(compiled(doc), alert(), store)
    assert finding is not None
    assert finding.summary == "1 kills; process None"
    assert [e.path for e in finding.evidence] == ["context/logs/1"]
    assert "captured" not in finding.evidence[0].snapshot  # nothing captured: nothing shown
    records = store.query_context("logs", start=NOW - timedelta(hours=1), end=NOW)
    assert all("captured" not in r.fields for r in records)


def test_count_distinct_and_size_compare_with_a_param_threshold(store) -> None:
    doc = rule_doc(
        params={"min_hosts": 2},
        capture=None,
        aggregate={
            "hosts": {"distinct": "attributes.host"},
            "n": {"count_distinct": "attributes.host"},
        },
        fire_when={
            "hosts": {"size_at_least": "$params.min_hosts"},
            "n": {"at_least": "$params.min_hosts"},
        },
        summary="{{ n }} hosts: {{ hosts | join(', ') }}",
        evidence={"from": "matched"},
    )
    del doc["capture"]
    rule = compiled(doc)
    store.add_context([log(5, "OOMKilled", host="a"), log(4, "OOMKilled", host="a")])
    finding, trace = evaluate_rule(rule, alert(), store)
    assert finding is None and "size_at_least" in (trace.reason or "")
    store.add_context([log(3, "OOMKilled", host="b")])
    finding, _ = evaluate_rule(rule, alert(), store)
    assert finding is not None and finding.summary == "2 hosts: a, b"


@pytest.mark.parametrize(
    ("fire_when", "path", "fix"),
    [
        (
            {"hosts": {"at_least": 2}},
            ("fire_when", "hosts", "at_least"),
            "hosts: {size_at_least: 2}",
        ),
        ({"hosts": {"below": 3}}, ("fire_when", "hosts", "below"), "hosts: {size_at_most: 3}"),
        ({"matched": {"above": 1}}, ("fire_when", "matched", "above"), "size_at_least"),
        (
            {"killed.samples": {"at_least": 1}},
            ("fire_when", "killed.samples", "at_least"),
            "size_at_least",
        ),
        (
            {"params.services": {"at_least": 1}},
            ("fire_when", "params.services", "at_least"),
            "size_at_least",
        ),
    ],
)
def test_a_list_compared_with_a_number_is_an_error_saying_what_to_write(
    fire_when: dict, path: tuple, fix: str
) -> None:
    doc = rule_doc(params={"services": ["a", "b"]}, fire_when=fire_when)
    doc["aggregate"] = {**doc["aggregate"], "hosts": {"distinct": "attributes.host"}}
    [(at, message)] = problems_of(doc)
    assert at == path
    assert "never holds" in message and fix in message


def test_numbers_compare_with_numbers_and_sizes_with_lists_cleanly() -> None:
    doc = rule_doc(
        fire_when={"killed.count": {"at_least": 2}, "killed.samples": {"size_at_least": 1}}
    )
    assert problems_of(doc) == []


@pytest.mark.parametrize(
    ("capture", "aggregate", "expected"),
    [
        ({"message": "Killed process \\d+"}, None, "has no named group"),
        ({"message": "Killed (?P<x>"}, None, "invalid regular expression"),
        ({"msg": KILLED}, None, "logs records have no field 'msg'"),
        (
            {"message": KILLED},
            {"k": {"dominant": "captured.proc"}},
            "no capture captured.proc (captured here: pid, process)",
        ),
        ({"message": KILLED, "attributes.cmd": "(?P<process>\\w+)"}, None, "already captured"),
    ],
)
def test_capture_mistakes_are_compile_errors(capture, aggregate, expected: str) -> None:
    doc = rule_doc(capture=capture, summary="{{ count }}", evidence={"from": "matched"})
    if aggregate is not None:
        doc["aggregate"] = aggregate
    found = problems_of(doc)
    assert found and any(expected in m for _, m in found), found


def test_a_match_cannot_read_a_capture_it_has_not_taken_yet() -> None:
    doc = rule_doc()
    doc["match"] = {**doc["match"], "captured.process": "java"}
    assert any(at[:2] == ("match", "captured.process") for at, _ in problems_of(doc))


def test_a_template_reading_a_missing_capture_is_a_rule_error_not_a_crash(store) -> None:
    store.add_context([log(3, "container checkout OOMKilled")])
    doc = rule_doc(summary="{{ matched[0].captured.process }}", evidence={"from": "matched"})
    finding, _ = evaluate_rule(compiled(doc), alert(), store)
    assert finding is not None and finding.rule_id == RULE_ERROR_ID


# --- through the service ----------------------------------------------------------------


def test_the_service_names_the_killed_process_and_its_evidence_resolves(api) -> None:
    from engine.testing import make_alert, ts

    kills = [
        {"service": "checkout-api", "level": "WARN", "when": ts(minutes=m), "message": text}
        for m, text in (
            (9, "Out of memory: Killed process 4242 (java)"),
            (6, "Out of memory: Killed process 4311 (java)"),
            (2, "container checkout OOMKilled (exit code 137)"),
        )
    ]
    assert api.post("/context/logs", json=kills).status_code < 300
    r = api.post("/alerts", json=make_alert(service="checkout-api"))
    incident_id = r.json()["results"][0]["incident"]
    incident = api.get(f"/api/incidents/{incident_id}").json()
    [finding] = [f for f in incident["findings"] if f["rule"] == "container.oom_killed"]
    assert finding["severity"] == "high"  # 3 kills in 15 minutes
    assert "the kernel killed java 2 times" in finding["summary"]
    cited = {e["path"]: e["snapshot"] for e in finding["evidence"]}
    assert cited["context/logs/2"]["captured"] == {"pid": "4311", "process": "java"}
    assert "captured" not in cited["context/logs/3"]  # the kubelet's line names no process
    assert api.get("/api/context/logs/2").status_code == 200


def test_the_readme_demo_leaves_both_new_rules_quiet(api) -> None:
    from tests.test_api import seed_demo

    incident = api.get(f"/api/incidents/{seed_demo(api)}").json()
    rules = {f["rule"] for f in incident["findings"]}
    assert {"deploy.recent_correlated", "logs.error_spike"} <= rules
    assert not rules & {"container.oom_killed", "leader.election_thrash"}
