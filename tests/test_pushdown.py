"""The query push-down (engine.rules.pushdown): what is derived from a compiled `match`,
what the store is asked, and that it never loses a record the full match keeps, even
with more open incidents than the unnarrowed query reads."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.alerts import parse_alert
from engine.model import Alert, Severity
from engine.pipeline import Pipeline
from engine.rules.compiler import CompiledRule, compile_rule
from engine.rules.conditions import Value
from engine.rules.evaluate import base_scope, evaluate_rule
from engine.rules.fetch import INCIDENT_QUERY_LIMIT, fetch, incident_record
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet
from engine.store import IncidentDraft, Store, open_store
from engine.timeutil import format_ts

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)
ALERT_FP = ("alert", "fingerprint")
ALERT_SERVICE = ("alert", "labels", "service")
ALERT_NAME = ("alert", "labels", "alertname")


@pytest.fixture
def store() -> Iterator[Store]:
    s = open_store(":memory:")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    ruleset, problems = load_ruleset([ROOT / "rules.d"])
    assert not [p for p in problems if p.level == "error"], problems
    return ruleset


class Recording:
    """A real store that remembers the list_incidents calls it answers."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[dict[str, Any]] = []

    def query_context(self, kind: str, **kw: Any) -> Any:
        return self.store.query_context(kind, **kw)

    def list_incidents(self, **kw: Any) -> Any:
        self.calls.append(kw)
        return self.store.list_incidents(**kw)


def make_alert(fingerprint: str | None = None, **labels: str) -> Alert:
    obj: dict[str, Any] = {"labels": labels, "startsAt": format_ts(NOW)}
    if fingerprint is not None:
        obj["fingerprint"] = fingerprint
    return parse_alert(obj, "alert", NOW)


def incidents_rule(match: dict[str, Any]) -> CompiledRule:
    doc = {
        "id": "test.incidents",
        "description": "incidents read through the push-down",
        "source": "incidents",
        "match": match,
        "summary": "{{ count }}",
        "evidence": {"from": "matched"},
    }
    rule, problems = compile_rule(doc, file="inline.yaml")
    assert rule is not None, problems
    return rule


def open_incident(
    store: Store, fingerprint: str, service: str, alertname: str, at: datetime
) -> str:
    alert = make_alert(fingerprint, alertname=alertname, service=service)
    draft = IncidentDraft(
        id=f"inc{fingerprint}",
        alert=alert,
        title=f"{alertname} on {service}",
        team=None,
        severity=Severity.MEDIUM,
        findings=(),
    )
    outcome = store.record_firing(draft, now=at, renotify_after=timedelta(hours=4))
    assert outcome.kind == "opened"
    return outcome.incident.id


# --- what is derived ---------------------------------------------------------------


def test_the_shipped_duplicate_rule_pushes_down_its_disjunction(shipped) -> None:
    pushdown = shipped.by_id("incident.duplicate_open").pushdown
    assert pushdown.equals == (("status", Value(literal="open")),)
    assert pushdown.any_of == (
        (("fingerprint", Value(ref=ALERT_FP)),),
        (("service", Value(ref=ALERT_SERVICE)), ("alertname", Value(ref=ALERT_NAME))),
    )


def test_the_shipped_context_rules_push_down_the_service(shipped) -> None:
    for rule_id in ("deploy.recent_correlated", "logs.error_spike", "traces.tail_latency"):
        pushdown = shipped.by_id(rule_id).pushdown
        assert pushdown.equals == (("service", Value(ref=ALERT_SERVICE)),), rule_id
        assert pushdown.any_of == (), rule_id


@pytest.mark.parametrize(
    "branch",
    [
        {"title": {"contains": "5xx"}},  # no equality at all
        {"severity": {"equals": "high"}},  # an equality, on a column with no index
        {"service": {"in": ["a", "b"]}},  # not an equality
        {"status": {"equals": "open"}},  # a column list_incidents cannot OR over
        {"any": [{"fingerprint": "x"}, {"service": "y"}]},  # not a conjunction
    ],
)
def test_an_any_with_a_branch_the_store_cannot_narrow_is_not_pushed_down(branch) -> None:
    rule = incidents_rule(
        {"status": "open", "any": [{"fingerprint": "$alert.fingerprint"}, branch]}
    )
    assert rule.pushdown.equals == (("status", Value(literal="open")),)
    assert rule.pushdown.any_of == ()


def test_equalities_inside_all_and_other_conjuncts_are_kept() -> None:
    rule = incidents_rule(
        {
            "all": [{"team": "web"}, {"title": {"contains": "x"}}],
            "any": [
                {"service": "a", "title": {"contains": "y"}},
                {"all": [{"fingerprint": "f"}, {"alertname": "n"}]},
            ],
        }
    )
    assert rule.pushdown.equals == (("team", Value(literal="web")),)
    assert rule.pushdown.any_of == (
        (("service", Value(literal="a")),),
        (("fingerprint", Value(literal="f")), ("alertname", Value(literal="n"))),
    )


# --- what the store is asked -------------------------------------------------------


def _fetch(rule: CompiledRule, alert: Alert, store: Store) -> tuple[Recording, list[str]]:
    recording = Recording(store)
    fetched = fetch(rule, alert, base_scope(rule, alert.as_scope()), recording)
    return recording, [r["id"] for r in fetched.records]


def test_the_duplicate_rule_asks_for_its_candidates_without_a_limit(shipped, store) -> None:
    rule = shipped.by_id("incident.duplicate_open")
    recording, _ = _fetch(rule, make_alert("fp1", alertname="A", service="s"), store)
    (call,) = recording.calls
    assert call["limit"] is None
    assert (call["status"], call["service"], call["fingerprint"]) == ("open", None, None)
    assert call["any_of"] == [{"fingerprint": "fp1"}, {"service": "s", "alertname": "A"}]


def test_a_branch_reading_a_missing_label_is_dropped(shipped, store) -> None:
    rule = shipped.by_id("incident.duplicate_open")
    recording, _ = _fetch(rule, make_alert("fp1", alertname="A"), store)  # no service
    assert recording.calls[0]["any_of"] == [{"fingerprint": "fp1"}]


def test_nothing_is_fetched_when_every_branch_reads_a_missing_label(store) -> None:
    open_incident(store, "fp1", "s", "A", NOW)
    rule = incidents_rule(
        {"any": [{"service": "$alert.labels.service"}, {"team": "$alert.labels.team"}]}
    )
    recording, ids = _fetch(rule, make_alert("fp1", alertname="A"), store)
    assert (recording.calls, ids) == ([], [])
    finding, trace = evaluate_rule(rule, make_alert("fp1", alertname="A"), store)
    assert finding is None and (trace.fetched, trace.matched) == (0, 0)


def test_without_a_narrowing_push_down_the_newest_are_read_as_before(store) -> None:
    rule = incidents_rule(
        {"status": "open", "any": [{"fingerprint": "$alert.fingerprint"}, {"severity": "high"}]}
    )
    recording, _ = _fetch(rule, make_alert("fp1", alertname="A", service="s"), store)
    (call,) = recording.calls
    assert (call["limit"], call["status"], call["any_of"]) == (INCIDENT_QUERY_LIMIT, "open", [])


def test_a_value_compared_as_a_number_is_not_pushed_down(shipped, store) -> None:
    # equals compares numeric text by value ("0123" equals "123"): SQL would not.
    rule = shipped.by_id("incident.duplicate_open")
    recording, _ = _fetch(rule, make_alert("1234567890123456", alertname="A", service="s"), store)
    (call,) = recording.calls
    assert (call["limit"], call["any_of"]) == (INCIDENT_QUERY_LIMIT, [])


def test_a_top_level_alertname_is_distributed_over_the_branches(store) -> None:
    rule = incidents_rule(
        {
            "alertname": "$alert.labels.alertname",
            "any": [{"fingerprint": "$alert.fingerprint"}, {"service": "s", "alertname": "B"}],
        }
    )
    recording, _ = _fetch(rule, make_alert("fp1", alertname="A", service="s"), store)
    assert recording.calls[0]["any_of"] == [{"fingerprint": "fp1", "alertname": "A"}]
    only = incidents_rule({"alertname": "$alert.labels.alertname"})
    recording, _ = _fetch(only, make_alert("fp1", alertname="A"), store)
    assert recording.calls[0]["any_of"] == [{"alertname": "A"}]
    assert recording.calls[0]["limit"] is None


# --- never fewer records than the full match -----------------------------------------


def test_the_push_down_keeps_every_record_the_match_keeps(store) -> None:
    rng = random.Random(7)
    services, names = ["s1", "s2", "007", "7"], ["A", "B", "1e3"]
    fingerprints = ["fa", "fb", "fc", "0042", "42", "4e1"]
    for n in range(60):
        fp = f"{rng.choice(fingerprints)}x{n}" if n % 3 else rng.choice(fingerprints)
        alert = make_alert(fp, alertname=rng.choice(names), service=rng.choice(services))
        store.record_firing(
            IncidentDraft(f"inc-{n}", alert, "t", rng.choice([None, "web"]), Severity.LOW, ()),
            now=NOW - timedelta(minutes=n),
            renotify_after=timedelta(hours=4),
        )
    everything = store.list_incidents(limit=None)
    rules = [
        incidents_rule(m)
        for m in (
            {
                "status": "open",
                "any": [
                    {"fingerprint": "$alert.fingerprint"},
                    {"service": "$alert.labels.service", "alertname": "$alert.labels.alertname"},
                ],
            },
            {"service": "$alert.labels.service", "team": "web"},
            {"alertname": "$alert.labels.alertname", "any": [{"team": "$alert.labels.team"}]},
        )
    ]
    for _ in range(40):
        labels = {
            k: rng.choice(v)
            for k, v in (("service", services), ("alertname", names), ("team", ["web", "x"]))
            if rng.random() < 0.8
        }
        alert = make_alert(rng.choice(fingerprints), **labels)
        for rule in rules:
            scope = base_scope(rule, alert.as_scope())
            assert rule.match is not None
            matches = rule.match.bind(scope)
            anchor = alert.starts_at.timestamp()
            expected = [
                r["id"] for r in (incident_record(i, anchor) for i in everything) if matches(r)
            ]
            got = fetch(rule, alert, scope, store)
            assert [r["id"] for r in got.records] == expected, (alert.labels, rule.match)


# --- the bug: more open incidents than the unnarrowed query reads -----------------------


def test_an_alert_joins_the_oldest_of_600_open_incidents(shipped) -> None:
    store = open_store(":memory:")
    try:
        start = NOW - timedelta(hours=2)
        oldest = open_incident(store, "fpoldest", "checkout-api", "HighLatency", start)
        for n in range(1, 600):
            open_incident(store, f"fp{n}", f"svc-{n % 40}", "HighErrorRate", start + n * 5 * SEC)
        assert len(store.list_incidents(status="open", limit=None)) == 600
        assert oldest not in {i.id for i in store.list_incidents(status="open", limit=500)}

        pipeline = Pipeline(store, lambda: shipped, clock=lambda: NOW)
        alert = make_alert("fpnew", alertname="HighLatency", service="checkout-api", pod="p-2")
        result = pipeline.handle(alert)

        assert result.outcome.kind == "attached"
        assert result.outcome.incident.id == oldest
        assert len(store.list_incidents(status="open", limit=None)) == 600  # no second one
        assert result.evaluation is not None
        (trace,) = [t for t in result.evaluation.traces if t.rule_id == "incident.duplicate_open"]
        assert (trace.fired, trace.fetched, trace.matched) == (True, 1, 1)
    finally:
        store.close()
