"""Lookup tables beside the rules, and joins: rules that take values from them.

Tables load from `<rules dir>/tables/*.yaml` (graph or keyed) and ownership.yaml; every
mistake is a problem at its file:line. A rule's conditions, lets and evidence read a
table by alert fields; a graph lookup follows up to `hops` edges, or the reverse edges;
a cited record also cites the table entries that linked it; an `in:` with a joined
list is pushed into the store query.
"""

from __future__ import annotations

import shutil
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.model import Alert
from engine.narrate import render_text
from engine.paths import rules_dir
from engine.pipeline import Pipeline
from engine.rules.evaluate import base_scope, evaluate_rules
from engine.rules.fetch import fetch
from engine.rules.loader import load_paths
from engine.rules.ruleset import RuleSet
from engine.store import open_store

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), "utf-8")
    return path


DEPENDENCIES = """
    kind: graph
    key: service
    entries:
      storefront: [checkout-api, search]
      checkout-api: [payments, inventory]
      payments: [ledger]
    """
SLO = """
    kind: keyed
    key: service
    fields: {p99_ms: number, runbook: string, tier: number}
    required: [p99_ms]
    entries:
      checkout-api: {p99_ms: 800, runbook: "https://runbooks.example/checkout"}
      search: {p99_ms: 2000}
    """
RULE_HEAD = """
    # yaml-language-server: $schema=../schemas/rule.schema.json
    id: {id}
    description: A rule of this test.
    """


def rule(root: Path, rule_id: str, body: str) -> Path:
    text = textwrap.dedent(RULE_HEAD).lstrip().format(id=rule_id) + textwrap.dedent(body)
    path = root / f"{rule_id}.yaml"
    path.write_text(text, "utf-8")
    return path


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    write(root, "tables/dependencies.yaml", DEPENDENCIES)
    write(root, "tables/slo.yaml", SLO)
    return root


def load(root: Path) -> RuleSet:
    result = load_paths([root])
    errors = [str(p) for p in result.problems if p.level == "error"]
    assert errors == []
    return result.ruleset


def problems(root: Path) -> list[str]:
    return [str(p) for p in load_paths([root]).problems if p.level == "error"]


# --- tables ---------------------------------------------------------------------------


def test_tables_load_with_their_kind_file_and_lines(rules: Path) -> None:
    rule(rules, "t.any", "source: alert\nsummary: x\nevidence: {alert: labels}\n")
    ruleset = load(rules)
    deps, slo = ruleset.tables["dependencies"], ruleset.tables["slo"]
    assert (deps.kind, slo.kind) == ("graph", "keyed")
    entry = deps.get("checkout-api")
    assert entry is not None
    assert (entry.value, entry.line, entry.path) == (
        ("payments", "inventory"),
        5,
        "tables/dependencies/checkout-api",
    )
    assert entry.file.endswith("tables/dependencies.yaml")
    assert slo.get("search").value == {"p99_ms": 2000}  # type: ignore[union-attr]


def test_ownership_yaml_is_the_ownership_table() -> None:
    ruleset = load_paths([rules_dir()]).ruleset
    owners = ruleset.tables["ownership"]
    entry = owners.get("checkout-api")
    assert entry is not None and owners.kind == "keyed"
    assert entry.value == {
        "service": "checkout-api",
        "team": "payments",
        "channel": "#payments-oncall",
    }
    assert entry.file.endswith("ownership.yaml") and entry.line == 6
    # ... and ownership.yaml itself works as before (routing.team reads it).
    assert {o.service for o in ruleset.ownership} >= {"api-gateway", "checkout-api", "search"}


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("tables/deps.yaml", "kind: graf\nentries: {}\n", "deps.yaml:1:7: -: kind must be graph or keyed (got \"graf\"; did you mean graph?)"),
        ("tables/deps.yaml", "kind: graph\nentries:\n  a: b\n", "deps.yaml:3:6: -: "),
        ("tables/deps.yaml", "kind: graph\nentries:\n  a: [a]\n", "deps.yaml:3:3: -: 'a' lists itself"),
        ("tables/slo.yaml", "kind: keyed\nfields: {p99_ms: number}\nentries:\n  a: {p99: 3}\n",
         "slo.yaml:4:7: -: 'p99' is not a declared field of this table (did you mean 'p99_ms'?)"),
        ("tables/slo.yaml", "kind: keyed\nfields: {p99_ms: number}\nentries:\n  a: {p99_ms: fast}\n",
         "slo.yaml:4:15: -: 'p99_ms' must be a number, not str 'fast'"),
        ("tables/slo.yaml", "kind: keyed\nrequired: [url]\nentries:\n  a: {owner: x}\n",
         "slo.yaml:4:3: -: entry 'a' lacks the required field 'url'"),
        ("tables/Bad.yaml", "kind: keyed\nentries: {}\n", "Bad.yaml:1:1: -: table name 'Bad'"),
        ("tables/ownership.yaml", "kind: keyed\nentries: {}\n",
         "ownership.yaml:1:1: -: the table `ownership` is ownership.yaml"),
    ],
)  # fmt: skip
def test_table_mistakes_are_reported_at_their_line(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    root = tmp_path / "rules"
    write(root, name, text)
    rule(root, "t.any", "source: alert\nsummary: x\nevidence: {alert: labels}\n")
    found = problems(root)
    assert any(expected in p for p in found), found


def test_lint_rules_reports_a_bad_table_file_by_path(tmp_path: Path) -> None:
    root = tmp_path / "rules"
    path = write(root, "tables/deps.yaml", "kind: graph\nentries:\n  a: [a]\n")
    result = load_paths([path])
    assert [str(p).split("rules/")[-1] for p in result.problems] == [
        "tables/deps.yaml:3:3: -: 'a' lists itself (at entries.a)"
    ]


@pytest.mark.parametrize(
    "match, expected",
    [
        ("service: {in: {table: dependecies, key: $alert.labels.service}}",
         "no table 'dependecies' (known: dependencies, slo"),
        ("service: {in: {table: slo, key: $alert.labels.service, hops: 2}}",
         "hops follows the edges of a graph table; slo is keyed"),
        ("service: {in: {table: dependencies, key: $alert.labels.service, field: x}}",
         "dependencies is a graph table: its entries are lists, they have no fields"),
        ("service: {in: {table: dependencies, key: $alert.labels.service, hops: 11}}",
         "hops"),
        ("service: {in: $params.nope}", "no param 'nope'"),
    ],
)  # fmt: skip
def test_join_mistakes_are_lint_errors(rules: Path, match: str, expected: str) -> None:
    rule(
        rules,
        "t.join",
        f"source: incidents\nmatch:\n  {match}\nsummary: x\nevidence: {{from: matched}}\n",
    )
    found = problems(rules)
    assert any(expected in p and "t.join.yaml:" in p for p in found), found


# --- joins ----------------------------------------------------------------------------


def firing(service: str, alertname: str = "HighErrorRate", at: datetime = T0) -> Alert:
    labels = {"alertname": alertname, "service": service}
    return Alert(f"fp-{service}-{alertname}", "firing", labels, {}, at)


def open_incident(store, service: str, minutes_ago: int) -> str:
    alert = firing(service, "Down", T0 - timedelta(minutes=minutes_ago))
    ruleset = RuleSet(rules=())
    at = T0 - timedelta(minutes=minutes_ago)
    outcome = Pipeline(store, lambda: ruleset, clock=lambda: at).handle(alert)
    assert outcome.outcome.incident is not None
    return outcome.outcome.incident.id


def findings(ruleset: RuleSet, alert: Alert, store) -> dict[str, object]:
    evaluation = evaluate_rules(ruleset, alert, store)
    return {f.rule_id: f for f in evaluation.findings}


def test_a_graph_join_follows_hops_and_cites_every_entry_on_the_path(rules: Path) -> None:
    rule(
        rules,
        "t.upstream",
        """
        source: incidents
        params: {hops: 3}
        match:
          status: open
          service: {in: {table: dependencies, key: $alert.labels.service, hops: $params.hops}}
        summary: "{{ count }} upstream incidents"
        evidence: {from: matched}
        """,
    )
    ruleset = load(rules)
    store = open_store(":memory:")
    try:
        ledger = open_incident(store, "ledger", 3)
        open_incident(store, "unrelated", 2)
        got = findings(ruleset, firing("storefront"), store)["t.upstream"]
        assert got.summary == "1 upstream incidents"  # type: ignore[attr-defined]
        assert [e.path for e in got.evidence] == [  # type: ignore[attr-defined]
            f"incidents/{ledger}",
            "tables/dependencies/storefront",
            "tables/dependencies/checkout-api",
            "tables/dependencies/payments",
        ]
        snapshot = got.evidence[1].snapshot  # type: ignore[attr-defined]
        assert snapshot == {"key": "storefront", "value": ["checkout-api", "search"]}
    finally:
        store.close()


def test_the_reverse_edge_gives_the_services_that_depend_on_the_alerting_one(
    rules: Path,
) -> None:
    rule(
        rules,
        "t.dependents",
        """
        source: incidents
        match:
          status: open
          service: {in: {table: dependencies, key: $alert.labels.service, reverse: true, hops: 2}}
        aggregate:
          services: {distinct: service}
        summary: "dependents alerting: {{ services | join(', ') }}"
        evidence: {from: matched}
        """,
    )
    ruleset = load(rules)
    store = open_store(":memory:")
    try:
        for service in ("checkout-api", "storefront", "search", "ledger"):
            open_incident(store, service, 1)
        got = findings(ruleset, firing("payments"), store)["t.dependents"]
        assert got.summary == "dependents alerting: checkout-api, storefront"  # type: ignore[attr-defined]
        paths = [e.path for e in got.evidence]  # type: ignore[attr-defined]
        assert "tables/dependencies/checkout-api" in paths  # lists payments
        assert "tables/dependencies/storefront" in paths  # lists checkout-api
    finally:
        store.close()


def test_keyed_lookups_in_conditions_lets_evidence_and_params_as_lists(rules: Path) -> None:
    rule(
        rules,
        "t.slo",
        """
        source: traces
        params:
          watched: [checkout-api, search]
          tiers: {gold: 1}
        match:
          service: {in: $params.watched}
        window: {before: 15m}
        aggregate:
          p99: {percentile: {field: duration_ms, p: 99}}
        let:
          runbook:
            - then: {table: slo, key: $alert.labels.service, field: runbook}
        fire_when:
          p99: {above: {table: slo, key: $alert.labels.service, field: p99_ms}}
          alert.labels.service: {in: $params.watched}
          params.tiers.gold: 1
        summary: "p99 {{ p99 }} ms over the SLO; runbook {{ runbook }}"
        evidence:
          - {from: matched, limit: 1}
          - {table: slo, key: $alert.labels.service}
        """,
    )
    ruleset = load(rules)
    store = open_store(":memory:")
    try:
        from engine.store import NewContext

        store.add_context(
            [
                NewContext(
                    "traces",
                    "checkout-api",
                    T0 - timedelta(minutes=1),
                    {"trace_id": "a", "duration_ms": 900},
                ),
                NewContext(
                    "traces",
                    "search",
                    T0 - timedelta(minutes=1),
                    {"trace_id": "b", "duration_ms": 900},
                ),
            ]
        )
        got = findings(ruleset, firing("checkout-api"), store)
        finding = got["t.slo"]
        assert (
            finding.summary == "p99 900 ms over the SLO; runbook https://runbooks.example/checkout"
        )  # type: ignore[attr-defined]
        assert [e.path for e in finding.evidence][-1] == "tables/slo/checkout-api"  # type: ignore[attr-defined]
        assert "t.slo" not in findings(ruleset, firing("search"), store)  # 900 < 2000
        assert "t.slo" not in findings(ruleset, firing("ledger"), store)  # not watched
    finally:
        store.close()


def test_an_in_of_a_joined_list_is_pushed_into_the_store_query(rules: Path) -> None:
    rule(
        rules,
        "t.upstream",
        """
        source: incidents
        match:
          status: open
          service: {in: {table: dependencies, key: $alert.labels.service, hops: 2}}
        summary: x
        evidence: {from: matched}
        """,
    )
    rule(
        rules,
        "t.logs",
        """
        source: logs
        match:
          service: {in: {table: dependencies, key: $alert.labels.service}}
        window: {before: 10m}
        summary: x
        evidence: {from: matched}
        """,
    )
    ruleset = load(rules)
    upstream, logs = ruleset.by_id("t.upstream"), ruleset.by_id("t.logs")
    assert upstream is not None and logs is not None
    scope = base_scope(upstream, firing("checkout-api").as_scope(), ruleset.tables)
    resolved = upstream.pushdown.resolve(scope)
    assert resolved is not None
    assert resolved.equals == {"status": "open"}
    assert resolved.branches() == [
        {"service": "payments"},
        {"service": "inventory"},
        {"service": "ledger"},
    ]
    # A service with no dependencies: nothing can match, nothing is read.
    lonely = base_scope(upstream, firing("ledger").as_scope(), ruleset.tables)
    assert upstream.pushdown.resolve(lonely) is None

    class Recorder:
        def __init__(self) -> None:
            self.calls: list[dict] = []

        def list_incidents(self, **kw):
            self.calls.append(kw)
            return []

        def query_context(self, kind, **kw):
            self.calls.append({"kind": kind, **kw})
            return []

    seen = Recorder()
    alert = firing("checkout-api")
    fetch(upstream, alert, scope, seen)
    assert seen.calls[0]["status"] == "open" and seen.calls[0]["limit"] is None
    assert seen.calls[0]["any_of"] == [
        {"service": "payments"},
        {"service": "inventory"},
        {"service": "ledger"},
    ]
    seen.calls.clear()
    fetch(logs, alert, base_scope(logs, alert.as_scope(), ruleset.tables), seen)
    assert [c["service"] for c in seen.calls] == ["payments", "inventory"]  # one indexed query each


def test_the_shipped_rule_set_copy_with_a_filled_graph_lints_clean(tmp_path: Path) -> None:
    root = tmp_path / "rules"
    shutil.copytree(rules_dir(), root)
    write(root, "tables/dependencies.yaml", DEPENDENCIES)
    result = load_paths([root])
    assert [str(p) for p in result.problems] == []


def test_any_rule_exporting_symptom_of_attaches_the_alert_as_a_symptom(rules: Path) -> None:
    """symptom_of works like duplicate_of for a rule with no table join: the alert joins
    the incident it names, listed among its symptoms."""
    rule(
        rules,
        "t.symptom",
        """
        source: incidents
        match:
          status: open
          alertname: RegionDown
        aggregate:
          root: earliest
        summary: "symptom of {{ root.id }}"
        evidence: {from: root}
        outputs:
          symptom_of: $root.id
        """,
    )
    ruleset = load(rules)
    store = open_store(":memory:")
    try:
        root = Pipeline(store, lambda: ruleset, clock=lambda: T0).handle(
            firing("edge", "RegionDown")
        )
        assert root.outcome.kind == "opened" and root.outcome.incident is not None
        later = T0 + timedelta(seconds=30)
        out = Pipeline(store, lambda: ruleset, clock=lambda: later).handle(
            firing("checkout-api", "HighErrorRate", later)
        )
        assert out.outcome.kind == "attached"
        incident = out.outcome.incident
        assert incident is not None and incident.id == root.outcome.incident.id
        assert [(s["service"], s["via"]) for s in incident.symptoms] == [("checkout-api", [])]
        report = render_text(incident, "attached")  # the stdout sink's report lists them
        assert "  symptoms (1): checkout-api (HighErrorRate)\n" in report
    finally:
        store.close()
