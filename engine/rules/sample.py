"""Lint's sample rendering: a rule's templates against a sample alert and sample records.

`check_render` runs the rule's evaluation (engine.rules.evaluate) with the fire condition
skipped and strict undefined names, so a misspelt name is found before the rule ships.
The loader calls it for every compiled rule when asked to (lint-rules, serve, tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from jinja2 import TemplateError

from engine.rules.compiler import CompiledRule
from engine.rules.evaluate import (
    RuleFailure,
    RuleTrace,
    base_scope,
    choose,
    describe_error,
    evaluate_records,
    render,
)
from engine.rules.fetch import Record, alert_record
from engine.rules.problems import CompileProblem
from engine.rules.pullspec import PULL_SAMPLE_FIELDS
from engine.timeutil import format_ts, from_epoch


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
        step = choose(steps, trial)
        trial[name] = step.then.get(trial) if step else None
    key = "summary"
    try:
        render(rule.summary, trial)
        key = "suggestion"
    except TemplateError:
        pass
    return CompileProblem(
        (key,), f"template error with a sample alert: {exc}", "template-undefined"
    )
