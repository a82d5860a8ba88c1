"""Evaluate compiled rules for one alert over the store, enforcing the evidence contract.

A rule that raises, or whose finding would cite nothing, never breaks the pipeline: it
becomes a LOW `rule.error` finding naming the rule, its file and the error, and the other
rules' findings still arrive.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError

from engine.model import Alert, Confidence, Evidence, Finding, Severity
from engine.rules.captures import CAPTURED, apply_captures
from engine.rules.compiler import (
    DEFAULT_CONFIDENCE,
    DEFAULT_SEVERITY,
    CompiledRule,
    EvidenceSpec,
    Step,
)
from engine.rules.conditions import MISSING, lookup
from engine.rules.fetch import ContextReader, Record, fetch
from engine.rules.lookups import TABLES
from engine.rules.ruleset import OwnershipEntry, RuleSet
from engine.rules.tables import Table

RULE_ERROR_ID = "rule.error"


class RuleFailure(Exception):
    """A rule could not produce a valid finding (an error in it, or no evidence)."""


@dataclass
class RuleTrace:
    """What happened to one rule for one alert (`replay --explain`, metrics)."""

    rule_id: str
    fired: bool = False
    fetched: int = 0
    matched: int = 0
    reason: str | None = None  # why it did not fire
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Evaluation:
    findings: list[Finding] = field(default_factory=list)
    traces: list[RuleTrace] = field(default_factory=list)


# --- evaluation ----------------------------------------------------------------------


def base_scope(
    rule: CompiledRule,
    alert_scope: Mapping[str, Any],
    tables: Mapping[str, Table] | None = None,
    *,
    public_url: str = "",
) -> dict[str, Any]:
    """What every template and condition of `rule` sees first. `public_url`: the base of
    links to the service (`--public-url`), also used by the `incident_url` filter."""
    return {
        "alert": alert_scope,
        "public_url": public_url.rstrip("/"),
        "params": dict(rule.params),
        "window": dict(rule.window.text) if rule.window else {},
        "rule": {"id": rule.id, "file": rule.file},
        TABLES: tables if tables is not None else {},
    }


def choose(steps: Sequence[Step], scope: Mapping[str, Any]) -> Step | None:
    for step in steps:
        if step.when is None or step.when.test(scope, scope):
            return step
    return None


def render(template: Any, scope: Mapping[str, Any]) -> str:
    return str(template.render(scope)).strip()


def _snapshot(record: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    out = {}
    for f in fields:
        v = lookup(record, tuple(f.split(".")))
        if v is not MISSING:
            out[f] = v
    return out


def collect_evidence(
    rule: CompiledRule, specs: Iterable[EvidenceSpec], scope: Mapping[str, Any]
) -> list[Evidence]:
    out: list[Evidence] = []
    for spec in specs:
        if spec.when is not None and not spec.when.test(scope, scope):
            continue
        if spec.kind == "records":
            value = lookup(scope, spec.target)
            records = value if isinstance(value, list) else [value]
            chains = [(f, join.chains(scope)) for f, join in rule.joins]
            for rec in records[: spec.limit]:
                if isinstance(rec, Mapping) and "path" in rec:
                    snapshot = _snapshot(rec, spec.fields)
                    if rec.get(CAPTURED):  # what the rule read from the record, shown with it
                        snapshot.setdefault(CAPTURED, rec[CAPTURED])
                    out.append(Evidence(rec["path"], snapshot))
                    for path, chain in chains:  # the table entries that linked the record
                        linked = lookup(rec, path)
                        for entry in chain.get(linked, ()) if isinstance(linked, str) else ():
                            out.append(Evidence(entry.path, entry.snapshot()))
        elif spec.kind == "table":
            assert spec.entry is not None
            table = scope[TABLES].get(spec.entry.table)
            cited = table.get(spec.entry.key.get(scope)) if table is not None else None
            if cited is not None:
                out.append(Evidence(cited.path, cited.snapshot()))
        elif spec.kind == "alert":
            value = lookup(scope["alert"], spec.target)
            if value is not MISSING and value is not None:
                out.append(
                    Evidence("alert/" + "/".join(spec.target), {".".join(spec.target): value})
                )
        else:
            name = spec.target[0]
            out.append(Evidence(f"rules/{rule.id}/params/{name}", {name: rule.params.get(name)}))
    seen: set[str] = set()
    unique = []
    for e in out:
        if e.path not in seen:
            seen.add(e.path)
            unique.append(e)
    return unique


def evaluate_records(
    rule: CompiledRule,
    scope: dict[str, Any],
    records: list[Record],
    trace: RuleTrace,
    *,
    force: bool = False,
    prematched: bool = False,
) -> Finding | None:
    """Match, aggregate, decide and render over already fetched records. `force` skips the
    fire condition (lint uses it to render templates against sample data); `prematched`:
    the records already passed the match (the incidents fast path of fetch)."""
    if rule.match is not None and not prematched:
        # The scope does not change while records are matched: resolve operands once.
        matches = rule.match.bind(scope)
        records = [r for r in records if matches(r)]
    if rule.captures:  # from the matched records only, on copies of them
        records = apply_captures(rule.captures, records)
    trace.matched = len(records)
    scope["count"] = len(records)
    scope["matched"] = records
    for name, aggregator in rule.aggregates:
        scope[name] = aggregator(records)
    extra_evidence: list[EvidenceSpec] = []
    for name, steps in rule.lets:
        step = choose(steps, scope)
        scope[name] = step.then.get(scope) if step else None
        if scope[name] is MISSING:
            scope[name] = None
        if step:
            extra_evidence.extend(step.evidence)

    if not force:
        if rule.fire_when is not None:
            reason = rule.fire_when.why_not(scope, scope)
        elif rule.fire_always:
            reason = None
        else:
            reason = None if records else "no records matched"
        if reason:
            trace.reason = f"fire_when: {reason}" if rule.fire_when is not None else reason
            return None

    severity = choose(rule.severity, scope)
    confidence = choose(rule.confidence, scope)
    summary = render(rule.summary, scope)
    suggestion = render(rule.suggestion, scope) if rule.suggestion else ""
    evidence = collect_evidence(rule, (*rule.evidence, *extra_evidence), scope)
    if not evidence:
        raise RuleFailure(
            "the rule fired but its evidence came out empty; the finding was not emitted"
        )
    outputs = {}
    for name, value in rule.outputs:
        v = value.get(scope)
        outputs[name] = None if v is MISSING else v
    trace.fired = True
    return Finding(
        rule_id=rule.id,
        severity=Severity.parse(severity.then if severity else DEFAULT_SEVERITY),
        confidence=Confidence.parse(confidence.then if confidence else DEFAULT_CONFIDENCE),
        summary=summary,
        suggestion=suggestion,
        evidence=tuple(evidence),
        outputs=outputs,
    )


def rule_error_finding(rule: CompiledRule, error: str) -> Finding:
    return Finding(
        rule_id=RULE_ERROR_ID,
        severity=Severity.LOW,
        confidence=Confidence.HIGH,
        summary=f"Rule {rule.id} ({rule.file}) failed and was skipped: {error}",
        suggestion=f"Fix the rule, then check it: lint-rules {rule.file} && incident-pilot test-rules",
        evidence=(
            Evidence(f"rules/{rule.id}", {"rule": rule.id, "file": rule.file, "error": error}),
        ),
        outputs={"failed_rule": rule.id},
    )


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, RuleFailure):
        return text
    if isinstance(exc, TemplateError):
        return f"template error: {text}"
    return f"{type(exc).__name__}: {text}"


def evaluate_rule(
    rule: CompiledRule,
    alert: Alert,
    store: ContextReader,
    ownership: Sequence[OwnershipEntry] = (),
    alert_scope: Mapping[str, Any] | None = None,
    tables: Mapping[str, Table] | None = None,
    *,
    public_url: str = "",
) -> tuple[Finding | None, RuleTrace]:
    trace = RuleTrace(rule.id)
    started = time.perf_counter()
    try:
        alert_scope = alert_scope if alert_scope is not None else alert.as_scope()
        scope = base_scope(rule, alert_scope, tables, public_url=public_url)
        fetched = fetch(rule, alert, scope, store, ownership)
        trace.fetched = fetched.fetched
        finding = evaluate_records(
            rule, scope, fetched.records, trace, prematched=fetched.prematched
        )
    except Exception as exc:  # a broken rule must never break the pipeline
        trace.error = describe_error(exc)
        trace.fired = False
        finding = rule_error_finding(rule, trace.error)
    trace.seconds = time.perf_counter() - started
    return finding, trace


def evaluate_rules(
    ruleset: RuleSet, alert: Alert, store: ContextReader, *, public_url: str = ""
) -> Evaluation:
    """Every enabled rule, in file order, for one alert. `public_url`: see base_scope."""
    result = Evaluation()
    alert_scope = alert.as_scope()
    for rule in ruleset.enabled:
        if rule.pull is not None:  # PULL HOOK: prometheus / loki rules run after the commit
            result.traces.append(RuleTrace(rule.id, reason="pull rule: runs after the commit"))
            continue
        finding, trace = evaluate_rule(
            rule,
            alert,
            store,
            ruleset.ownership,
            alert_scope,
            ruleset.tables,
            public_url=public_url,
        )
        result.traces.append(trace)
        if finding is not None:
            result.findings.append(finding)
    return result
