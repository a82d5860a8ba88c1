"""Condition blocks: every operator, `$ref` operands, durations, missing fields, grouping."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from engine.rules.compiler import compile_rule  # noqa: E402
from engine.rules.conditions import (  # noqa: E402
    MISSING,
    NUMERIC_OPS,
    ConditionCompiler,
    Value,
    lookup,
    parse_value,
    to_number,
)
from engine.rules.problems import CompileProblem  # noqa: E402

SCOPE: dict[str, Any] = {
    "alert": {
        "labels": {"service": "api-gateway", "team": "edge", "replicas": "3"},
        "annotations": {"summary": "5xx above 5%"},
        "startsAt": "2026-01-01T12:00:00Z",
    },
    "params": {"high_within": "10m", "min_errors": 5, "levels_a": "ERROR"},
    "count": 7,
}


def compile_block(node: Any) -> tuple[Any, list[CompileProblem]]:
    problems: list[CompileProblem] = []
    compiler = ConditionCompiler(lambda _p: None, lambda _p: None, problems)
    return compiler.block(node, ("match",)), problems


def holds(node: Any, subject: Any, scope: Any = SCOPE) -> bool:
    cond, problems = compile_block(node)
    assert not problems, problems
    return cond.test(subject, scope)


REC = {
    "service": "api-gateway",
    "level": "ERROR",
    "message": "upstream timeout request 42",
    "age": 180.0,
    "duration_ms": 1500,
    "tags": ["canary", "eu"],
    "attributes": {"region": "eu-west-1", "pod": "api-7f9c"},
    "nothing": None,
}


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        # bare value = equals
        ({"level": "ERROR"}, True),
        ({"level": "INFO"}, False),
        ({"level": {"equals": "ERROR"}}, True),
        ({"duration_ms": 1500}, True),
        ({"duration_ms": 1500.0}, True),
        ({"duration_ms": "1500"}, True),  # a numeric operand matches a numeric field
        ({"level": {"equals": "error"}}, False),  # case-sensitive
        # not_equals
        ({"level": {"not_equals": "INFO"}}, True),
        ({"level": {"not_equals": "ERROR"}}, False),
        # in / not_in
        ({"level": {"in": ["ERROR", "FATAL"]}}, True),
        ({"level": {"in": ["WARN", "INFO"]}}, False),
        ({"duration_ms": {"in": [1000, 1500]}}, True),
        ({"level": {"not_in": ["WARN", "INFO"]}}, True),
        ({"level": {"not_in": ["ERROR"]}}, False),
        # matches: re.search, anchors are explicit
        ({"message": {"matches": "timeout"}}, True),
        ({"message": {"matches": "^timeout"}}, False),
        ({"message": {"matches": r"request \d+$"}}, True),
        ({"duration_ms": {"matches": "^15"}}, True),  # numbers are matched as text
        # contains: substring of a text, item of a list
        ({"message": {"contains": "timeout"}}, True),
        ({"message": {"contains": "refused"}}, False),
        ({"tags": {"contains": "canary"}}, True),
        ({"tags": {"contains": "us"}}, False),
        ({"duration_ms": {"contains": 1}}, False),  # a number contains nothing
        # numeric comparisons
        ({"duration_ms": {"at_least": 1500}}, True),
        ({"duration_ms": {"at_least": 1501}}, False),
        ({"duration_ms": {"at_most": 1500}}, True),
        ({"duration_ms": {"at_most": 1499}}, False),
        ({"duration_ms": {"above": 1500}}, False),
        ({"duration_ms": {"above": 1499.5}}, True),
        ({"duration_ms": {"below": 1500}}, False),
        ({"duration_ms": {"below": "1501"}}, True),  # numeric strings are numbers
        # durations compare in seconds (age is in seconds)
        ({"age": {"at_most": "3m"}}, True),
        ({"age": {"below": "3m"}}, False),
        ({"age": {"above": "2m59s"}}, True),
        ({"age": {"at_least": "1h"}}, False),
        ({"age": {"at_most": "180000ms"}}, True),
        ({"message": {"at_least": 1}}, False),  # not a number: every comparison fails
        # several operators in one object: all must hold
        ({"duration_ms": {"above": 1000, "below": 2000}}, True),
        ({"duration_ms": {"above": 1000, "below": 1200}}, False),
        # exists
        ({"level": {"exists": True}}, True),
        ({"level": {"exists": False}}, False),
        ({"nothing": {"exists": True}}, False),  # null counts as absent
        ({"nothing": {"exists": False}}, True),
        ({"absent": {"exists": False}}, True),
        # dotted paths into open maps
        ({"attributes.region": "eu-west-1"}, True),
        ({"attributes.region": {"matches": "^us-"}}, False),
        ({"tags.0": "canary"}, True),  # list index in a path
    ],
)
def test_operator(node: Any, expected: bool) -> None:
    assert holds(node, REC) is expected


@pytest.mark.parametrize(
    "op",
    [*("equals", "not_equals", "in", "not_in", "matches", "contains"), *NUMERIC_OPS],
)
@pytest.mark.parametrize("field", ["absent", "nothing", "attributes.absent", "level.deeper"])
def test_a_missing_field_fails_every_operator_but_exists_false(op: str, field: str) -> None:
    operand: Any = ["x"] if op in ("in", "not_in") else "x" if op in ("matches", "contains") else 1
    assert holds({field: {op: operand}}, REC) is False


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"service": {"equals": "$alert.labels.service"}}, True),
        ({"service": "$alert.labels.service"}, True),  # a bare $ref is equals too
        ({"level": {"equals": "$params.levels_a"}}, True),
        ({"level": {"in": ["$params.levels_a", "FATAL"]}}, True),
        ({"level": {"not_in": ["$params.levels_a"]}}, False),
        ({"age": {"at_most": "$params.high_within"}}, True),  # a duration param
        ({"age": {"above": "$params.high_within"}}, False),
        ({"duration_ms": {"above": "$count"}}, True),
        ({"message": {"contains": "$alert.annotations.summary"}}, False),
        # a reference to something that is not there never equals anything
        ({"service": {"equals": "$alert.labels.absent"}}, False),
        ({"service": {"in": ["$alert.labels.absent"]}}, False),
        ({"duration_ms": {"at_least": "$params.absent"}}, False),
    ],
)
def test_ref_operands_read_the_scope(node: Any, expected: bool) -> None:
    assert holds(node, REC) is expected


def test_refs_are_read_at_test_time_not_compile_time() -> None:
    cond, _ = compile_block({"service": "$alert.labels.service"})
    other = {**SCOPE, "alert": {"labels": {"service": "checkout-api"}}}
    assert cond.test(REC, SCOPE) is True
    assert cond.test(REC, other) is False


@pytest.mark.parametrize(
    ("raw", "literal", "ref"),
    [
        ("$alert.labels.service", None, ("alert", "labels", "service")),
        ("$$5 off", "$5 off", None),  # $$ escapes a literal $
        ("$$alert.labels.service", "$alert.labels.service", None),
        ("plain", "plain", None),
        ("a$b", "a$b", None),  # only a leading $ is special
        (5, 5, None),
        (None, None, None),
    ],
)
def test_parse_value(raw: Any, literal: Any, ref: Any) -> None:
    value = parse_value(raw)
    assert value == Value(literal=literal, ref=ref)


def test_dollar_escape_in_a_condition() -> None:
    price = {"message": "$5 off"}
    assert holds({"message": "$$5 off"}, price) is True
    assert holds({"message": {"contains": "$$5"}}, price) is True
    # unescaped, `$5` would be a reference to a name `5` that does not exist
    assert holds({"message": {"contains": "$5"}}, price) is False


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"all": [{"level": "ERROR"}, {"service": "api-gateway"}]}, True),
        ({"all": [{"level": "ERROR"}, {"service": "search"}]}, False),
        ({"any": [{"level": "INFO"}, {"service": "api-gateway"}]}, True),
        ({"any": [{"level": "INFO"}, {"service": "search"}]}, False),
        ({"not": {"level": "INFO"}}, True),
        ({"not": {"level": "ERROR"}}, False),
        ({"not": {"absent": {"exists": True}}}, True),
        # field tests next to groups: all of them must hold
        ({"level": "ERROR", "any": [{"tags": {"contains": "eu"}}, {"age": {"above": "1h"}}]}, True),
        ({"level": "INFO", "any": [{"tags": {"contains": "eu"}}]}, False),
        # nesting
        ({"any": [{"not": {"level": "ERROR"}}, {"all": [{"age": {"below": "5m"}}]}]}, True),
        ({"not": {"any": [{"level": "INFO"}, {"level": "WARN"}]}}, True),
    ],
)
def test_all_any_not(node: Any, expected: bool) -> None:
    assert holds(node, REC) is expected


def test_why_not_names_the_failing_test_and_the_values() -> None:
    cond, _ = compile_block({"count": {"at_least": "$params.min_errors"}})
    reason = cond.why_not({"count": 4}, SCOPE)
    assert reason == "count (4) at_least $params.min_errors = 5"
    assert cond.why_not({"count": 5}, SCOPE) is None
    cond, _ = compile_block({"level": "ERROR", "service": "search"})
    assert cond.why_not(REC, SCOPE) == "service ('api-gateway') equals 'search'"
    cond, _ = compile_block({"any": [{"level": "INFO"}, {"level": "WARN"}]})
    assert cond.why_not(REC, SCOPE).startswith("none of: level ('ERROR') equals 'INFO'")


@pytest.mark.parametrize(
    ("node", "code"),
    [
        ({"message": {"matches": "("}}, "bad-regex"),
        ({"age": {"at_most": "ten minutes"}}, "bad-duration"),
        ({"age": {"above": True}}, "schema"),
        ({"age": {"around": 5}}, "schema"),
    ],
)
def test_compile_problems(node: Any, code: str) -> None:
    _, problems = compile_block(node)
    assert [p.code for p in problems] == [code]
    assert problems[0].key_path[:2] == ("match", next(iter(node)))


def test_to_number() -> None:
    assert to_number(3) == 3.0
    assert to_number("2.5") == 2.5
    assert to_number("10m") == 600.0
    assert to_number("1h30m") == 5400.0
    assert to_number("250ms") == 0.25
    assert to_number(True) is None
    assert to_number(None) is None
    assert to_number(MISSING) is None
    assert to_number("abc") is None


def test_lookup() -> None:
    assert lookup(REC, ("attributes", "pod")) == "api-7f9c"
    assert lookup(REC, ("tags", "1")) == "eu"
    assert lookup(REC, ("tags", "5")) is MISSING
    assert lookup(REC, ("absent", "x")) is MISSING
    assert lookup(REC, ("level", "x")) is MISSING


def _rule(**over: Any) -> dict[str, Any]:
    doc = {
        "id": "t.rule",
        "description": "d",
        "source": "logs",
        "window": {"before": "10m"},
        "summary": "s",
        "evidence": {"from": "matched"},
    }
    doc.update(over)
    return doc


@pytest.mark.parametrize(
    ("over", "code", "text"),
    [
        ({"match": {"colour": "red"}}, "unknown-field", "logs records have no field 'colour'"),
        ({"match": {"level.x": "red"}}, "unknown-field", "has no sub-fields"),
        (
            {"match": {"level": "$count"}},
            "unknown-reference",
            "may only read $alert.* and $params.*",
        ),
        ({"match": {"level": "$params.nope"}}, "unknown-reference", "no param 'nope'"),
        ({"match": {"level": "$alert.nope"}}, "unknown-reference", "the alert has no field 'nope'"),
        ({"fire_when": {"count": {"above": "$nope"}}}, "unknown-reference", "unknown name 'nope'"),
    ],
)
def test_rule_compiler_checks_fields_and_references(over: Any, code: str, text: str) -> None:
    rule, problems = compile_rule(_rule(**over), file="t.yaml")
    assert rule is None
    assert any(p.code == code and text in p.message for p in problems), problems


def test_rule_compiler_accepts_open_maps_and_scope_refs() -> None:
    doc = _rule(
        params={"n": 3},
        match={"attributes.pod": {"matches": "^api-"}, "service": "$alert.labels.service"},
        aggregate={"last": "latest"},
        fire_when={"count": {"at_least": "$params.n"}, "last.level": "ERROR"},
    )
    rule, problems = compile_rule(doc, file="t.yaml")
    assert rule is not None, problems
    assert str(rule.pushdown.value("service")) == "$alert.labels.service"  # to the store query
