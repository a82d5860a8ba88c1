"""Evaluate compiled rules for one alert over the store, enforcing the evidence contract.

A rule that raises, or whose finding would cite nothing, never breaks the pipeline: it
becomes a LOW `rule.error` finding naming the rule, its file and the error, and the other
rules' findings still arrive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any, Protocol

from jinja2 import TemplateError

from engine.model import Alert, Confidence, ContextRecord, Evidence, Finding, Incident, Severity
from engine.rules.compiler import (
    CONTEXT_SOURCES,
    DEFAULT_CONFIDENCE,
    DEFAULT_SEVERITY,
    CompiledRule,
    EvidenceSpec,
    Step,
)
from engine.rules.conditions import MISSING, Condition, lookup
from engine.rules.problems import CompileProblem
from engine.rules.pullspec import PULL_SAMPLE_FIELDS
from engine.rules.ruleset import OwnershipEntry, RuleSet
from engine.timeutil import format_ts, from_epoch

# Records are rebuilt for every alert, and the same timestamps come back alert after alert
# (every open incident is read by incident.duplicate_open for each alert; a service's recent
# records by each of its alerts). strftime was the largest single cost of building them
# (docs/PERFORMANCE.md): a bounded cache of the formatted text removes it.
_format_ts = lru_cache(maxsize=16384)(format_ts)

RULE_ERROR_ID = "rule.error"
INCIDENT_QUERY_LIMIT = 500
Record = dict[str, Any]


class ContextReader(Protocol):
    """The part of the store rules read (see engine.store.base.Store)."""

    def query_context(
        self,
        kind: str,
        *,
        start: datetime,
        end: datetime,
        service: str | None = None,
        limit: int | None = None,
    ) -> list[ContextRecord]: ...

    def list_incidents(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        service: str | None = None,
        team: str | None = None,
        since: datetime | None = None,
    ) -> list[Incident]: ...


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


# --- records -------------------------------------------------------------------------


def context_record(rec: ContextRecord, anchor: float) -> Record:
    epoch = rec.ts.timestamp()
    return {
        **rec.fields,
        "id": rec.id,
        "service": rec.service,
        "ts": _format_ts(rec.ts),
        "age": round(anchor - epoch, 3),
        "path": rec.path,
        "_epoch": epoch,
    }


def incident_record(inc: Incident, anchor: float) -> Record:
    epoch = inc.opened_at.timestamp()
    opened = _format_ts(inc.opened_at)
    return {
        "id": inc.id,
        "path": inc.path,
        "ts": opened,
        "age": round(anchor - epoch, 3),
        "fingerprint": inc.fingerprint,
        "status": inc.status,
        "title": inc.title,
        "service": inc.service,
        "alertname": inc.alertname,
        "team": inc.team,
        "severity": inc.severity.word,
        "opened_at": opened,
        "last_seen": _format_ts(inc.last_seen),
        "resolved_at": _format_ts(inc.resolved_at) if inc.resolved_at else None,
        "repeat_count": inc.repeat_count,
        "attached_count": inc.attached_count,
        "_epoch": epoch,
    }


def alert_record(alert_scope: Mapping[str, Any], anchor: float) -> Record:
    return {
        **alert_scope,
        "ts": alert_scope["startsAt"],
        "age": 0,
        "path": "alert",
        "_epoch": anchor,
    }


def fetch_records(
    rule: CompiledRule,
    alert: Alert,
    scope: Mapping[str, Any],
    store: ContextReader,
    ownership: Sequence[OwnershipEntry],
) -> list[Record]:
    """The source's records in the rule's window, narrowed by the pushed-down service."""
    anchor = alert.starts_at.timestamp()
    service = rule.service.get(scope) if rule.service else None
    if service is MISSING or service is None:
        if rule.service is not None:
            return []  # matching on a label the alert lacks: nothing can match
        service = None
    if rule.source in CONTEXT_SOURCES:
        assert rule.window is not None  # the compiler requires one
        start, end = alert.starts_at - rule.window.before, alert.starts_at + rule.window.after
        rows = store.query_context(
            rule.source, start=start, end=end, service=str(service) if service else None
        )
        return [context_record(r, anchor) for r in rows]
    if rule.source == "incidents":
        return [incident_record(i, anchor) for i in fetch_incidents(rule, alert, scope, store)]
    if rule.source == "ownership":
        return [e.as_record() for e in ownership]
    return [alert_record(scope["alert"], anchor)]


def fetch_incidents(
    rule: CompiledRule, alert: Alert, scope: Mapping[str, Any], store: ContextReader
) -> list[Incident]:
    """The incidents an `incidents` rule reads: status and service pushed down, then the
    window (by opening time). Only called once the pushed-down service is known."""
    anchor = alert.starts_at.timestamp()
    service = rule.service.get(scope) if rule.service else None
    if service is MISSING:
        service = None
    status = rule.status.get(scope) if rule.status else None
    since = alert.starts_at - rule.window.before if rule.window else None
    incidents = store.list_incidents(
        limit=INCIDENT_QUERY_LIMIT,
        status=status if isinstance(status, str) else None,
        service=str(service) if service else None,
        since=since,
    )
    if rule.window:
        last = anchor + rule.window.after.total_seconds()
        incidents = [i for i in incidents if i.opened_at.timestamp() <= last]
    return incidents


# Incident record fields that cost next to nothing to read, as incident_record gives them.
_CHEAP_INCIDENT_FIELDS: dict[str, Callable[[Incident], Any]] = {
    name: attrgetter(attr)
    for name, attr in {
        "id": "id",
        "path": "path",
        "fingerprint": "fingerprint",
        "status": "status",
        "title": "title",
        "service": "service",
        "alertname": "alertname",
        "team": "team",
        "severity": "severity.word",
        "repeat_count": "repeat_count",
        "attached_count": "attached_count",
    }.items()
}
_match_fields_cache: dict[int, tuple[Condition, tuple[str, ...] | None]] = {}


def _cheap_match_fields(match: Condition) -> tuple[str, ...] | None:
    """The incident fields `match` reads, when all are cheap (else None). Cached per
    compiled condition."""
    hit = _match_fields_cache.get(id(match))
    if hit is not None and hit[0] is match:
        return hit[1]
    fields = match.fields()
    names = None
    if fields is not None and {f[0] for f in fields} <= _CHEAP_INCIDENT_FIELDS.keys():
        names = tuple(sorted({f[0] for f in fields}))
    if len(_match_fields_cache) > 1024:  # rules reloaded many times: start over
        _match_fields_cache.clear()
    _match_fields_cache[id(match)] = (match, names)
    return names


def matching_incident_records(
    rule: CompiledRule, alert: Alert, scope: Mapping[str, Any], store: ContextReader
) -> tuple[int, list[Record]] | None:
    """For an `incidents` rule whose match reads only cheap fields: (fetched, the records of
    the matching incidents). The match reads those fields straight from each Incident, so
    the full record (timestamps formatted, ages) is built only for the incidents that
    match. None: not such a rule, use fetch_records. Same records, in the same order."""
    if rule.source != "incidents" or rule.match is None:
        return None
    names = _cheap_match_fields(rule.match)
    if names is None:
        return None
    service = rule.service.get(scope) if rule.service else None
    if rule.service is not None and (service is MISSING or service is None):
        return 0, []  # as fetch_records: a pushed-down label the alert lacks
    incidents = fetch_incidents(rule, alert, scope, store)
    matches = rule.match.bind(scope, _incident_access)
    anchor = alert.starts_at.timestamp()
    return len(incidents), [incident_record(i, anchor) for i in incidents if matches(i)]


def _incident_access(path: tuple[str, ...]) -> Callable[[Incident], Any]:
    """Read a record field path straight from the Incident: what `lookup` gives on its
    incident_record (the first part is always present there, possibly None)."""
    get = _CHEAP_INCIDENT_FIELDS[path[0]]
    rest = path[1:]
    if not rest:
        return get
    return lambda i: lookup(get(i), rest)


# --- evaluation ----------------------------------------------------------------------


def base_scope(rule: CompiledRule, alert_scope: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "alert": alert_scope,
        "params": dict(rule.params),
        "window": dict(rule.window.text) if rule.window else {},
        "rule": {"id": rule.id, "file": rule.file},
    }


def _choose(steps: Sequence[Step], scope: Mapping[str, Any]) -> Step | None:
    for step in steps:
        if step.when is None or step.when.test(scope, scope):
            return step
    return None


def _render(template: Any, scope: Mapping[str, Any]) -> str:
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
            for rec in records[: spec.limit]:
                if isinstance(rec, Mapping) and "path" in rec:
                    out.append(Evidence(rec["path"], _snapshot(rec, spec.fields)))
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
    the records already passed the match (matching_incident_records)."""
    if rule.match is not None and not prematched:
        # The scope does not change while records are matched: resolve operands once.
        matches = rule.match.bind(scope)
        records = [r for r in records if matches(r)]
    trace.matched = len(records)
    scope["count"] = len(records)
    scope["matched"] = records
    for name, aggregator in rule.aggregates:
        scope[name] = aggregator(records)
    extra_evidence: list[EvidenceSpec] = []
    for name, steps in rule.lets:
        step = _choose(steps, scope)
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

    severity = _choose(rule.severity, scope)
    confidence = _choose(rule.confidence, scope)
    summary = _render(rule.summary, scope)
    suggestion = _render(rule.suggestion, scope) if rule.suggestion else ""
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
) -> tuple[Finding | None, RuleTrace]:
    trace = RuleTrace(rule.id)
    started = time.perf_counter()
    try:
        scope = base_scope(rule, alert_scope if alert_scope is not None else alert.as_scope())
        prematched = matching_incident_records(rule, alert, scope, store)
        if prematched is not None:
            trace.fetched, records = prematched
            finding = evaluate_records(rule, scope, records, trace, prematched=True)
        else:
            records = fetch_records(rule, alert, scope, store, ownership)
            trace.fetched = len(records)
            finding = evaluate_records(rule, scope, records, trace)
    except Exception as exc:  # a broken rule must never break the pipeline
        trace.error = describe_error(exc)
        trace.fired = False
        finding = rule_error_finding(rule, trace.error)
    trace.seconds = time.perf_counter() - started
    return finding, trace


def evaluate_rules(ruleset: RuleSet, alert: Alert, store: ContextReader) -> Evaluation:
    """Every enabled rule, in file order, for one alert."""
    result = Evaluation()
    alert_scope = alert.as_scope()
    for rule in ruleset.enabled:
        if rule.pull is not None:  # PULL HOOK: prometheus / loki rules run after the commit
            result.traces.append(RuleTrace(rule.id, reason="pull rule: runs after the commit"))
            continue
        finding, trace = evaluate_rule(rule, alert, store, ruleset.ownership, alert_scope)
        result.traces.append(trace)
        if finding is not None:
            result.findings.append(finding)
    return result


# --- lint: render templates against sample data ----------------------------------------


class _SampleMap(dict):  # type: ignore[type-arg]
    """Labels / annotations / attributes of the sample alert: any key has a value."""

    def __missing__(self, key: str) -> str:
        return f"sample-{key}"


_SAMPLE_FIELDS: dict[str, dict[str, Any]] = {
    "deploys": {"commit": "a39bf2c", "author": "sample-author", "attributes": _SampleMap()},
    "logs": {"level": "ERROR", "message": "upstream timeout request 7", "attributes": _SampleMap()},
    "traces": {"trace_id": "4bf92f3577b34da6", "duration_ms": 1500, "attributes": _SampleMap()},
    **PULL_SAMPLE_FIELDS,  # prometheus, loki (engine.rules.pullspec)
}


def sample_alert_scope() -> dict[str, Any]:
    return {
        "fingerprint": "0123456789abcdef",
        "status": "firing",
        "labels": _SampleMap(
            alertname="SampleAlert", service="sample-service", severity="critical"
        ),
        "annotations": _SampleMap(summary="sample summary"),
        "startsAt": "2026-01-01T12:00:00Z",
        "endsAt": None,
        "generatorURL": "http://prometheus.example/graph",
    }


def _sample_records(source: str, anchor: float, scope: Mapping[str, Any]) -> list[Record]:
    records = []
    for i in range(1, 4):
        epoch = anchor - 60 * i
        base = {"id": str(i), "ts": format_ts(from_epoch(epoch)), "age": 60 * i}
        base["_epoch"] = epoch
        if source in _SAMPLE_FIELDS:
            base.update(
                _SAMPLE_FIELDS[source], service="sample-service", path=f"context/{source}/{i}"
            )
        elif source == "incidents":
            base.update(
                path=f"incidents/inc-{i}",
                fingerprint="0123456789abcdef",
                status="open",
                title="SampleAlert on sample-service",
                service="sample-service",
                alertname="SampleAlert",
                team="sample-team",
                severity="medium",
                opened_at=base["ts"],
                last_seen=base["ts"],
                resolved_at=None,
                repeat_count=0,
                attached_count=0,
                id=f"inc-{i}",
            )
        elif source == "ownership":
            base = {
                "service": "sample-service",
                "team": "sample-team",
                "path": "ownership/sample-service",
            }
        else:
            base = alert_record(scope["alert"], anchor)
        records.append(base)
    return records


def check_render(rule: CompiledRule) -> list[CompileProblem]:
    """Render the rule's templates against a sample alert and sample records, with strict
    undefined names, so a misspelt name is found before the rule ships."""
    scope = base_scope(rule, sample_alert_scope())
    anchor = 1767268800.0  # the sample alert's startsAt
    records = _sample_records(rule.source, anchor, scope)
    trace = RuleTrace(rule.id)
    problems: list[CompileProblem] = []
    try:
        # No match filter here: the sample records stand for whatever the rule would match.
        evaluate_records(replace(rule, match=None), dict(scope), records, trace, force=True)
    except TemplateError as exc:
        problems.append(_template_problem(rule, scope, records, exc))
    except RuleFailure:
        pass  # evidence depends on real data; the compiler checked it is declared
    except Exception as exc:
        problems.append(
            CompileProblem((), f"rule fails on sample data: {describe_error(exc)}", "render")
        )
    return problems


def _template_problem(
    rule: CompiledRule, scope: dict[str, Any], records: list[Record], exc: TemplateError
) -> CompileProblem:
    """Find which template failed (summary or suggestion) for the problem's location."""
    trial = dict(scope)
    trial.update(count=len(records), matched=records)
    for name, aggregator in rule.aggregates:
        trial[name] = aggregator(records)
    for name, steps in rule.lets:
        step = _choose(steps, trial)
        trial[name] = step.then.get(trial) if step else None
    key = "summary"
    try:
        _render(rule.summary, trial)
        key = "suggestion"
    except TemplateError:
        pass
    return CompileProblem(
        (key,), f"template error with a sample alert: {exc}", "template-undefined"
    )
