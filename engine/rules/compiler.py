"""Compile a schema-valid rule document once into a `CompiledRule` the evaluator runs.

Compiling checks what the schema cannot: regexes, durations, fields the source does not
have, `$references` to unknown names, templates and evidence. Problems are collected with
the key path they concern; the loader turns key paths into file:line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateNotFound, TemplateSyntaxError

from engine.rules.aggregate import RECORD_AGGREGATIONS, Aggregator, kind_of, make_aggregator
from engine.rules.captures import Capture, compile_captures, list_vs_number
from engine.rules.conditions import MISSING, Condition, ConditionCompiler, Value, lookup, split_path
from engine.rules.lookups import Lookup, LookupCompiler, joins_of
from engine.rules.problems import CompileProblem, KeyPath
from engine.rules.pullspec import PULL_FIELDS, PULL_SNAPSHOT_FIELDS, PullSpec, compile_pull
from engine.rules.pushdown import Pushdown
from engine.rules.pushdown import derive as derive_pushdown
from engine.rules.tables import Table
from engine.rules.templating import environment, flat_globals
from engine.timeutil import TimeFormatError, parse_duration

CONTEXT_SOURCES = ("deploys", "logs", "traces")
_RECORD = {"id", "ts", "age", "path", "service"}
SOURCE_FIELDS: dict[str, set[str]] = {
    "deploys": _RECORD | {"commit", "author", "attributes"},
    "logs": _RECORD | {"level", "message", "attributes"},
    "traces": _RECORD | {"trace_id", "duration_ms", "attributes"},
    "incidents": _RECORD
    | {"fingerprint", "status", "title", "alertname", "team", "severity", "opened_at"}
    | {"last_seen", "repeat_count", "attached_count", "resolved_at"},
    "alert": {"ts", "age", "path", "labels", "annotations", "startsAt", "endsAt"}
    | {"fingerprint", "status", "generatorURL"},
    "ownership": {"service", "team", "path", "channel", "escalation", "notes"},
    **PULL_FIELDS,  # prometheus, loki (engine.rules.pullspec)
}
# Fields whose children are open-ended maps (labels.anything, attributes.anything).
OPEN_MAPS = {"labels", "annotations", "attributes"}
ALERT_FIELDS = SOURCE_FIELDS["alert"] - {"ts", "age", "path"}
# The fields an evidence snapshot keeps by default, per source.
SNAPSHOT_FIELDS: dict[str, tuple[str, ...]] = {
    "deploys": ("service", "commit", "author", "ts"),
    "logs": ("service", "level", "message", "ts"),
    "traces": ("service", "trace_id", "duration_ms", "ts"),
    "incidents": ("id", "title", "status", "fingerprint", "service", "opened_at"),
    "alert": ("labels", "startsAt"),
    "ownership": ("service", "team"),
    **PULL_SNAPSHOT_FIELDS,
}
DEFAULT_SEVERITY = "info"
DEFAULT_CONFIDENCE = "medium"
BUILTIN_NAMES = ("alert", "params", "count", "matched", "window", "rule", "public_url")


@dataclass(frozen=True)
class Window:
    before: timedelta
    after: timedelta
    text: dict[str, str]  # as written, for templates: window.before -> "10m"


@dataclass(frozen=True)
class Step:
    """One step of a ladder: when `when` holds (or is None), the value is `then`."""

    when: Condition | None
    then: Any
    evidence: tuple[EvidenceSpec, ...] = ()


@dataclass(frozen=True)
class EvidenceSpec:
    kind: str  # "records" | "alert" | "param" | "table"
    target: tuple[str, ...]
    limit: int = 10
    fields: tuple[str, ...] = ()
    when: Condition | None = None
    entry: Lookup | None = None  # kind "table": the entry cited


@dataclass(frozen=True)
class CompiledRule:
    id: str
    description: str
    enabled: bool
    source: str
    file: str
    params: Mapping[str, Any]
    match: Condition | None
    pushdown: Pushdown  # the part of `match` the store's indexed query answers
    # The record fields `match` reads (their first path part): None when unknown or no match.
    match_fields: frozenset[str] | None
    window: Window | None
    aggregates: tuple[tuple[str, Aggregator], ...]
    lets: tuple[tuple[str, tuple[Step, ...]], ...]
    fire_when: Condition | None  # None with fire_always False: at least one record matched
    fire_always: bool
    severity: tuple[Step, ...]
    confidence: tuple[Step, ...]
    summary: Template
    suggestion: Template | None
    evidence: tuple[EvidenceSpec, ...]
    outputs: tuple[tuple[str, Value], ...]
    templates: Mapping[str, str] = field(default_factory=dict)  # name -> source text, for lint
    pull: PullSpec | None = None  # prometheus / loki: run after the commit (engine.pull)
    # (record field, lookup) of `match` tests whose values come from a table: a cited
    # record also cites the table entries that linked it.
    joins: tuple[tuple[tuple[str, ...], Lookup], ...] = ()
    captures: tuple[Capture, ...] = ()  # named groups read from the matched records


class _Names:
    """Which names a `$reference` or a scope condition may use at each stage."""

    def __init__(self, source: str, params: Mapping[str, Any]):
        self.source = source
        self.params = params
        self.scope: dict[str, str] = {}  # aggregate / let name -> kind
        self.captured: set[str] = set()  # the group names of `capture:` (captured.NAME)

    def check_alert_path(self, path: tuple[str, ...]) -> str | None:
        if not path:
            return None
        head = path[0]
        if head not in ALERT_FIELDS:
            return f"the alert has no field {head!r} (known: {', '.join(sorted(ALERT_FIELDS))})"
        if head in OPEN_MAPS:
            return None if len(path) <= 2 else f"labels and annotations are flat: {'.'.join(path)}"
        return None if len(path) == 1 else f"alert field {head!r} has no sub-fields"

    def ref_before_aggregation(self, path: tuple[str, ...]) -> str | None:
        head = path[0]
        if head == "alert":
            return self.check_alert_path(path[1:])
        if head == "params":
            return self._check_param(path)
        return f"${'.'.join(path)}: match conditions may only read $alert.* and $params.*"

    def ref_in_scope(self, path: tuple[str, ...]) -> str | None:
        head = path[0]
        if head == "alert":
            return self.check_alert_path(path[1:])
        if head == "params":
            return self._check_param(path)
        if head in ("count", "matched", "window", "rule") or head in self.scope:
            return None
        known = sorted(["alert", "params", "count", "matched", "window", *self.scope])
        return f"unknown name {head!r} (known here: {', '.join(known)})"

    def _check_param(self, path: tuple[str, ...]) -> str | None:
        if len(path) < 2 or path[1] not in self.params:
            return f"no param {'.'.join(path[1:])!r} in this rule's params"
        if len(path) > 2 and lookup(self.params, path[1:]) is MISSING:
            return f"param {path[1]!r} has no {'.'.join(path[2:])!r}"
        return None

    def record_field(self, path: tuple[str, ...]) -> str | None:
        fields = SOURCE_FIELDS[self.source]
        head = path[0]
        if head == "captured":
            known = ", ".join(sorted(self.captured)) or "none: add a `capture:`"
            ok = len(path) == 2 and path[1] in self.captured
            return None if ok else f"no capture {'.'.join(path)} (captured here: {known})"
        if head not in fields:
            return (
                f"{self.source} records have no field {head!r} (known: {', '.join(sorted(fields))})"
            )
        if len(path) > 1 and head not in OPEN_MAPS:
            return f"field {head!r} of {self.source} records has no sub-fields"
        return None


def _compile_template(
    raw: Any,
    at: KeyPath,
    dirs: Sequence[Path],
    problems: list[CompileProblem],
    texts: dict[str, str],
) -> Template | None:
    env = environment(dirs)
    try:
        if isinstance(raw, Mapping):
            template = env.get_template(raw["file"])
            texts[str(at[-1])] = Path(template.filename or "").read_text(encoding="utf-8")
            return flat_globals(template)
        texts[str(at[-1])] = raw
        return flat_globals(env.from_string(raw))
    except TemplateNotFound as exc:
        where = ", ".join(str(d) for d in dirs) or "no template directory"
        problems.append(
            CompileProblem(
                at, f"template file {exc.name!r} not found in {where}", "missing-template"
            )
        )
    except TemplateSyntaxError as exc:
        problems.append(
            CompileProblem(
                at, f"template syntax error (template line {exc.lineno}): {exc.message}", "template"
            )
        )
    return None


def compile_rule(
    doc: Mapping[str, Any],
    *,
    file: str,
    template_dirs: Sequence[Path] = (),
    tables: Mapping[str, Table] | None = None,
) -> tuple[CompiledRule | None, list[CompileProblem]]:
    """Compile a schema-valid rule document. Returns (None, problems) when it has errors.
    `tables`: the lookup tables the rule may name (None: not checked)."""
    problems: list[CompileProblem] = []
    source = doc["source"]
    params = dict(doc.get("params") or {})
    names = _Names(source, params)
    record_conditions = ConditionCompiler(
        names.record_field, names.ref_before_aggregation, problems
    )
    scope_conditions = ConditionCompiler(names.ref_in_scope, names.ref_in_scope, problems)
    for conditions in (record_conditions, scope_conditions):
        conditions.extended = LookupCompiler(conditions, tables, params, problems)

    match = record_conditions.block(doc["match"], ("match",)) if "match" in doc else None
    read = match.fields() if match is not None else None
    match_fields = None if read is None else frozenset(path[0] for path in read)

    captures, names.captured = compile_captures(doc.get("capture"), names.record_field, problems)
    scope_conditions.list_valued = lambda path, op, raw: list_vs_number(
        names.scope, params, path, op, raw
    )
    window = _window(doc.get("window"), source, problems)
    pull = compile_pull(doc, source, window is not None, record_conditions, problems)

    aggregates = []
    for name, spec in (doc.get("aggregate") or {}).items():
        if name in BUILTIN_NAMES:
            problems.append(
                CompileProblem(("aggregate", name), f"{name!r} is a built-in name", "reserved-name")
            )
            continue
        kind = kind_of(spec)
        if kind != "count" and isinstance(spec, Mapping):
            fields = spec[kind]
            field_text = (
                fields if isinstance(fields, str) else fields.get("field", fields.get("by"))
            )
            problem = names.record_field(split_path(field_text))
            if problem:
                problems.append(CompileProblem(("aggregate", name, kind), problem, "unknown-field"))
        aggregates.append((name, make_aggregator(spec)))
        names.scope[name] = kind

    lets = []
    for name, ladder in (doc.get("let") or {}).items():
        if name in BUILTIN_NAMES or name in names.scope:
            problems.append(
                CompileProblem(("let", name), f"{name!r} is already defined", "reserved-name")
            )
            continue
        steps = _ladder(ladder, ("let", name), scope_conditions, names, problems, values=True)
        lets.append((name, steps))
        names.scope[name] = "let"

    raw_fire = doc.get("fire_when")
    fire_always = raw_fire == "always"
    fire_when = None
    if isinstance(raw_fire, Mapping):
        fire_when = scope_conditions.block(raw_fire, ("fire_when",))

    severity = _word_ladder(doc.get("severity", DEFAULT_SEVERITY), "severity", scope_conditions)
    confidence = _word_ladder(
        doc.get("confidence", DEFAULT_CONFIDENCE), "confidence", scope_conditions
    )

    texts: dict[str, str] = {}
    summary = _compile_template(doc["summary"], ("summary",), template_dirs, problems, texts)
    suggestion = None
    if "suggestion" in doc:
        suggestion = _compile_template(
            doc["suggestion"], ("suggestion",), template_dirs, problems, texts
        )

    evidence = _evidence_list(doc.get("evidence"), ("evidence",), scope_conditions, names, problems)
    joins = tuple(joins_of(match)) if match is not None else ()
    has_ladder_evidence = any(step.evidence for _, steps in lets for step in steps)
    if not evidence and not has_ladder_evidence:
        problems.append(
            CompileProblem(
                (),
                "rule declares no evidence: add `evidence:` (e.g. {from: matched}) so findings cite records",
                "no-evidence",
            )
        )

    outputs = []
    for name, raw in (doc.get("outputs") or {}).items():
        outputs.append((name, scope_conditions.value(raw, ("outputs", name))))

    if any(p.level == "error" for p in problems) or summary is None:
        return None, problems
    rule = CompiledRule(
        id=doc["id"],
        description=doc["description"],
        enabled=doc.get("enabled", True),
        source=source,
        file=file,
        params=params,
        match=match,
        pushdown=derive_pushdown(match, source),
        match_fields=match_fields,
        window=window,
        aggregates=tuple(aggregates),
        lets=tuple(lets),
        fire_when=fire_when,
        fire_always=fire_always,
        severity=severity,
        confidence=confidence,
        summary=summary,
        suggestion=suggestion,
        evidence=tuple(evidence),
        outputs=tuple(outputs),
        templates=texts,
        pull=pull,
        joins=joins,
        captures=captures,
    )
    return rule, problems


def _window(raw: Any, source: str, problems: list[CompileProblem]) -> Window | None:
    if raw is None:
        if source in CONTEXT_SOURCES:
            problems.append(
                CompileProblem(
                    (),
                    f"a rule reading {source} needs a window, e.g. window: {{before: 10m}}",
                    "missing-window",
                )
            )
        return None
    spans: dict[str, timedelta] = {}
    for key in ("before", "after"):
        text = raw.get(key, "0s")
        try:
            spans[key] = parse_duration(text)
        except TimeFormatError as exc:
            problems.append(CompileProblem(("window", key), str(exc), "bad-duration"))
            spans[key] = timedelta(0)
    return Window(
        spans["before"], spans["after"], {k: str(raw.get(k, "0s")) for k in ("before", "after")}
    )


def _ladder(
    raw: Sequence[Mapping[str, Any]],
    at: KeyPath,
    compiler: ConditionCompiler,
    names: _Names,
    problems: list[CompileProblem],
    *,
    values: bool,
) -> tuple[Step, ...]:
    steps = []
    for i, step in enumerate(raw):
        when = compiler.block(step["when"], (*at, i, "when")) if "when" in step else None
        then = compiler.value(step["then"], (*at, i, "then")) if values else step["then"]
        evidence = _evidence_list(
            step.get("evidence"), (*at, i, "evidence"), compiler, names, problems
        )
        steps.append(Step(when, then, tuple(evidence)))
    return tuple(steps)


def _word_ladder(raw: Any, key: str, compiler: ConditionCompiler) -> tuple[Step, ...]:
    if isinstance(raw, str):
        return (Step(None, raw),)
    return tuple(
        Step(compiler.block(s["when"], (key, i, "when")) if "when" in s else None, s["then"])
        for i, s in enumerate(raw)
    )


def _evidence_list(
    raw: Any,
    at: KeyPath,
    compiler: ConditionCompiler,
    names: _Names,
    problems: list[CompileProblem],
) -> list[EvidenceSpec]:
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        where = (*at, i) if isinstance(raw, list) else at
        when = compiler.block(item["when"], (*where, "when")) if "when" in item else None
        if "from" in item:
            target = split_path(item["from"])
            kind = "matched" if target == ("matched",) else names.scope.get(target[0])
            if kind not in RECORD_AGGREGATIONS and kind != "matched":
                problems.append(
                    CompileProblem(
                        (*where, "from"),
                        f"evidence can only cite `matched` or an aggregate holding records "
                        f"(first, latest, earliest, top, pattern_of, dominant); {item['from']!r} is not one",
                        "bad-evidence",
                    )
                )
            if kind in ("pattern_of", "dominant") and len(target) == 1:
                target = (*target, "samples")
            fields = tuple(item.get("fields") or SNAPSHOT_FIELDS[names.source])
            for f in item.get("fields") or ():
                problem = names.record_field(split_path(f))
                if problem:
                    problems.append(CompileProblem((*where, "fields"), problem, "unknown-field"))
            out.append(EvidenceSpec("records", target, item.get("limit", 10), fields, when))
        elif "table" in item:
            entry = compiler.value({"table": item["table"], "key": item["key"]}, where)
            if isinstance(entry, Lookup):
                out.append(EvidenceSpec("table", (item["table"],), when=when, entry=entry))
        elif "alert" in item:
            target = split_path(item["alert"])
            problem = names.check_alert_path(target)
            if problem:
                problems.append(CompileProblem((*where, "alert"), problem, "unknown-field"))
            out.append(EvidenceSpec("alert", target, when=when))
        else:
            if item["param"] not in names.params:
                problems.append(
                    CompileProblem(
                        (*where, "param"),
                        f"no param {item['param']!r} in this rule",
                        "unknown-reference",
                    )
                )
            out.append(EvidenceSpec("param", (item["param"],), when=when))
    return out
