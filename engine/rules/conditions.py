"""Condition blocks: compiled once into small objects, tested per record or per rule scope.

A block maps field paths to tests (`service: {equals: $alert.labels.service}`); every test
must hold, and the keys `all`, `any` and `not` group further blocks. A value written as
`$a.b.c` is read from the rule scope (the alert, params, aggregates); `$$` escapes a `$`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.rules.problems import CompileProblem, KeyPath
from engine.rules.values import MISSING, plain_text, to_number
from engine.timeutil import TimeFormatError, is_duration, parse_duration

Scope = Mapping[str, Any]
# A field path -> the function reading it from a subject (Condition.bind).
Access = Callable[[tuple[str, ...]], Callable[[Any], Any]]


def lookup(obj: Any, path: tuple[str, ...]) -> Any:
    """Follow a dotted path through mappings (and list indexes); MISSING when absent."""
    for part in path:
        # Plain dicts first: records and scopes are dicts, and the ABC isinstance check
        # was the largest single cost of matching records (docs/PERFORMANCE.md).
        if type(obj) is dict or isinstance(obj, Mapping):
            obj = obj.get(part, MISSING)
        elif isinstance(obj, list | tuple) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return MISSING
        if obj is MISSING:
            return MISSING
    return obj


def split_path(text: str) -> tuple[str, ...]:
    return tuple(text.split("."))


@dataclass(frozen=True)
class Value:
    """A literal, or a `$reference` read from the rule scope when tested."""

    literal: Any = None
    ref: tuple[str, ...] | None = None
    spread: ClassVar[bool] = False  # True: gives the whole list of an `in:` (lookups.Spread)

    def get(self, scope: Scope) -> Any:
        return self.literal if self.ref is None else lookup(scope, self.ref)

    def __str__(self) -> str:
        return "$" + ".".join(self.ref) if self.ref else repr(self.literal)


def parse_value(raw: Any) -> Value:
    if isinstance(raw, str) and raw.startswith("$"):
        if raw.startswith("$$"):
            return Value(literal=raw[1:])
        return Value(ref=split_path(raw[1:]))
    return Value(literal=raw)


def _present(v: Any) -> bool:
    return v is not MISSING and v is not None


def _equal(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str):
        return False
    # A number and its text ("3" and 3) are equal, whichever side the text is on.
    na, nb = to_number(a), to_number(b)
    return na is not None and nb is not None and na == nb


# Each operator: (field value, resolved operand) -> bool. Missing values fail every test
# but `exists: false`.
def _op_equals(v: Any, x: Any) -> bool:
    return _present(v) and _present(x) and _equal(v, x)


def _op_not_equals(v: Any, x: Any) -> bool:
    return _present(v) and not _equal(v, x)


def _op_in(v: Any, xs: list[Any]) -> bool:
    return _present(v) and any(_equal(v, x) for x in xs if _present(x))


def _op_not_in(v: Any, xs: list[Any]) -> bool:
    return _present(v) and not any(_equal(v, x) for x in xs)


def _op_contains(v: Any, x: Any) -> bool:
    if not _present(v) or not _present(x):
        return False
    if isinstance(v, str):
        return str(x) in v
    if isinstance(v, list | tuple | set):
        return any(_equal(item, x) for item in v)
    return False


def _compare(pred: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def test(v: Any, x: Any) -> bool:
        a, b = to_number(v), to_number(x)
        return a is not None and b is not None and pred(a, b)

    return test


def _size(pred: Callable[[int, float], bool]) -> Callable[[Any, Any], bool]:
    def test(v: Any, x: Any) -> bool:
        n = to_number(x)
        return isinstance(v, list | tuple | set | dict) and n is not None and pred(len(v), n)

    return test


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "equals": _op_equals,
    "not_equals": _op_not_equals,
    "in": _op_in,
    "not_in": _op_not_in,
    "contains": _op_contains,
    "at_least": _compare(lambda a, b: a >= b),
    "at_most": _compare(lambda a, b: a <= b),
    "above": _compare(lambda a, b: a > b),
    "below": _compare(lambda a, b: a < b),
    "size_at_least": _size(lambda a, b: a >= b),
    "size_at_most": _size(lambda a, b: a <= b),
}
NUMERIC_OPS = ("at_least", "at_most", "above", "below")
SIZE_OPS = ("size_at_least", "size_at_most")


def _fields_of(parts: tuple[Condition, ...]) -> list[tuple[str, ...]] | None:
    out: list[tuple[str, ...]] = []
    for part in parts:
        fields = part.fields()
        if fields is None:
            return None
        out.extend(fields)
    return out


def listed(operand: Any, scope: Scope) -> list[Any]:
    """The values of an `in:` operand: a list of values, or one value giving the list."""
    return operand.get(scope) if isinstance(operand, Value) else [x.get(scope) for x in operand]


def _getter(path: tuple[str, ...]) -> Callable[[Any], Any]:
    """`lookup(subject, path)` as a function; one plain-dict `get` for a one-part path."""
    if len(path) == 1:
        (key,) = path
        return lambda s: s.get(key, MISSING) if type(s) is dict else lookup(s, path)
    return lambda s: lookup(s, path)


class Condition:
    """Base of the compiled forms. `test` is the hot path; `why_not` explains a failure."""

    def test(self, subject: Any, scope: Scope) -> bool:
        raise NotImplementedError

    def why_not(self, subject: Any, scope: Scope) -> str | None:
        return None if self.test(subject, scope) else str(self)

    def fields(self) -> list[tuple[str, ...]] | None:
        """The subject fields this condition reads (None: unknown)."""
        return None

    def bind(self, scope: Scope, access: Access | None = None) -> Callable[[Any], Any]:
        """`test` with the scope fixed: a predicate over subjects whose truth is that of
        `self.test(subject, scope)` while `scope` is unchanged. Operands (`$references`,
        literals) are resolved once here instead of once per record; see FieldTest.
        `access(path)` gives the function that reads a field path from a subject (default:
        `lookup`); only conditions whose `fields()` are known use it."""
        return lambda subject: self.test(subject, scope)


@dataclass(frozen=True)
class FieldTest(Condition):
    field: tuple[str, ...]
    op: str
    operand: Any  # Value, list[Value], compiled regex, or bool

    def test(self, subject: Any, scope: Scope) -> bool:
        v = lookup(subject, self.field)
        if self.op == "exists":
            return _present(v) == self.operand
        if self.op == "matches":
            return _present(v) and self.operand.search(str(v)) is not None
        if self.op in ("in", "not_in"):
            return _OPERATORS[self.op](v, listed(self.operand, scope))
        return _OPERATORS[self.op](v, self.operand.get(scope))

    def fields(self) -> list[tuple[str, ...]] | None:
        return [self.field]

    def bind(self, scope: Scope, access: Access | None = None) -> Callable[[Any], Any]:
        get = (access or _getter)(self.field)
        op = self.op
        if op == "exists":
            want = self.operand
            return lambda s: _present(get(s)) == want
        if op == "matches":
            search = self.operand.search

            def matches(s: Any) -> bool:
                v = get(s)
                return v is not MISSING and v is not None and search(str(v)) is not None

            return matches
        test = _OPERATORS[op]
        if op in ("in", "not_in"):
            xs = listed(self.operand, scope)
            if op == "in" and xs and all(plain_text(x) for x in xs):
                # Against texts that are not numbers, _equal is ==; a str field value is
                # then in the set exactly when _op_in holds. Other values: the operator.
                texts = frozenset(xs)

                def among(s: Any) -> bool:
                    v = get(s)
                    return v in texts if type(v) is str else test(v, xs)

                return among
            return lambda s: test(get(s), xs)
        x = self.operand.get(scope)
        if op == "equals" and plain_text(x):
            # _op_equals(v, x) for such an x: v present and v == x; and a missing or None
            # v never equals a str.
            return lambda s: get(s) == x
        return lambda s: test(get(s), x)

    def why_not(self, subject: Any, scope: Scope) -> str | None:
        if self.test(subject, scope):
            return None
        v = lookup(subject, self.field)
        if isinstance(self.operand, Value) and (
            self.operand.ref or type(self.operand) is not Value
        ):
            resolved = self.operand.get(scope)
            shown = f"{self.operand} = {resolved!r}"
        else:
            shown = self._operand_text()
        return f"{'.'.join(self.field)} ({v!r}) {self.op} {shown}"

    def _operand_text(self) -> str:
        if self.op == "matches":
            return repr(self.operand.pattern)
        if isinstance(self.operand, list):
            return "[" + ", ".join(str(x) for x in self.operand) + "]"
        return str(self.operand)

    def __str__(self) -> str:
        return f"{'.'.join(self.field)} {self.op} {self._operand_text()}"


@dataclass(frozen=True)
class AllOf(Condition):
    parts: tuple[Condition, ...]

    def fields(self) -> list[tuple[str, ...]] | None:
        return _fields_of(self.parts)

    def test(self, subject: Any, scope: Scope) -> bool:
        return all(p.test(subject, scope) for p in self.parts)

    def bind(self, scope: Scope, access: Access | None = None) -> Callable[[Any], Any]:
        tests = tuple(p.bind(scope, access) for p in self.parts)
        if len(tests) == 1:
            return tests[0]
        if len(tests) == 2:
            first, second = tests
            return lambda s: first(s) and second(s)
        return lambda s: all(t(s) for t in tests)

    def why_not(self, subject: Any, scope: Scope) -> str | None:
        for p in self.parts:
            reason = p.why_not(subject, scope)
            if reason:
                return reason
        return None

    def __str__(self) -> str:
        return " and ".join(str(p) for p in self.parts)


@dataclass(frozen=True)
class AnyOf(Condition):
    parts: tuple[Condition, ...]

    def fields(self) -> list[tuple[str, ...]] | None:
        return _fields_of(self.parts)

    def test(self, subject: Any, scope: Scope) -> bool:
        return any(p.test(subject, scope) for p in self.parts)

    def bind(self, scope: Scope, access: Access | None = None) -> Callable[[Any], Any]:
        tests = tuple(p.bind(scope, access) for p in self.parts)
        if len(tests) == 1:
            return tests[0]
        if len(tests) == 2:
            first, second = tests
            return lambda s: first(s) or second(s)
        return lambda s: any(t(s) for t in tests)

    def why_not(self, subject: Any, scope: Scope) -> str | None:
        if self.test(subject, scope):
            return None
        return "none of: " + "; ".join(
            filter(None, (p.why_not(subject, scope) for p in self.parts))
        )

    def __str__(self) -> str:
        return "any of (" + "; ".join(str(p) for p in self.parts) + ")"


@dataclass(frozen=True)
class NotOf(Condition):
    part: Condition

    def fields(self) -> list[tuple[str, ...]] | None:
        return self.part.fields()

    def test(self, subject: Any, scope: Scope) -> bool:
        return not self.part.test(subject, scope)

    def bind(self, scope: Scope, access: Access | None = None) -> Callable[[Any], Any]:
        test = self.part.bind(scope, access)
        return lambda s: not test(s)

    def why_not(self, subject: Any, scope: Scope) -> str | None:
        return None if self.test(subject, scope) else f"not ({self.part})"

    def __str__(self) -> str:
        return f"not ({self.part})"


@dataclass
class ConditionCompiler:
    """Compiles blocks and collects problems. `check_field` and `check_ref` let the rule
    compiler reject fields the source does not have and references to unknown names."""

    check_field: Callable[[tuple[str, ...]], str | None]
    check_ref: Callable[[tuple[str, ...]], str | None]
    problems: list[CompileProblem]
    # Values written as a mapping (a table lookup), and `in:` operands written as one
    # value: (kind "lookup" | "spread", raw or inner value, key path) -> Value.
    extended: Callable[[str, Any, KeyPath], Value] | None = None
    # (path, operator, operand) -> the problem of comparing a list with a number, if it is one.
    list_valued: Callable[[tuple[str, ...], str, Any], str | None] | None = None

    def block(self, node: Any, at: KeyPath) -> Condition:
        parts: list[Condition] = []
        if not isinstance(node, Mapping):
            self.problems.append(CompileProblem(at, "expected a mapping of conditions", "schema"))
            return AllOf(())
        for key, spec in node.items():
            where = (*at, key)
            if key == "all":
                parts.append(AllOf(tuple(self.block(b, (*where, i)) for i, b in enumerate(spec))))
            elif key == "any":
                parts.append(AnyOf(tuple(self.block(b, (*where, i)) for i, b in enumerate(spec))))
            elif key == "not":
                parts.append(NotOf(self.block(spec, where)))
            else:
                parts.extend(self.field(str(key), spec, where))
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def field(self, key: str, spec: Any, at: KeyPath) -> list[Condition]:
        path = split_path(key)
        problem = self.check_field(path)
        if problem:
            self.problems.append(CompileProblem(at, problem, "unknown-field"))
        if not isinstance(spec, Mapping):
            spec = {"equals": spec}
        tests: list[Condition] = []
        for op, raw in spec.items():
            where = (*at, op)
            if op == "exists":
                tests.append(FieldTest(path, op, bool(raw)))
            elif op == "matches":
                try:
                    tests.append(FieldTest(path, op, re.compile(str(raw))))
                except re.error as exc:
                    self.problems.append(
                        CompileProblem(
                            where, f"invalid regular expression {raw!r}: {exc}", "bad-regex"
                        )
                    )
            elif op in ("in", "not_in"):
                if isinstance(raw, list) or self.extended is None:
                    values: Any = [self.value(x, (*where, i)) for i, x in enumerate(raw or [])]
                else:  # one value holding the list: $params.services, a table lookup
                    values = self.extended("spread", self.value(raw, where), where)
                tests.append(FieldTest(path, op, values))
            elif op in _OPERATORS:
                value = self.value(raw, where)
                if op in (*NUMERIC_OPS, *SIZE_OPS) and value.ref is None and type(value) is Value:
                    self._check_number(value.literal, op, where)
                problem = self.list_valued(path, op, raw) if self.list_valued else None
                if problem:
                    self.problems.append(CompileProblem(where, problem, "list-vs-number"))
                tests.append(FieldTest(path, op, value))
            else:
                self.problems.append(CompileProblem(where, f"unknown operator {op!r}", "schema"))
        return tests

    def value(self, raw: Any, at: KeyPath) -> Value:
        if isinstance(raw, Mapping) and self.extended is not None:
            return self.extended("lookup", raw, at)
        value = parse_value(raw)
        if value.ref is not None:
            problem = self.check_ref(value.ref)
            if problem:
                self.problems.append(CompileProblem(at, problem, "unknown-reference"))
        return value

    def _check_number(self, literal: Any, op: str, at: KeyPath) -> None:
        if isinstance(literal, str) and not is_duration(literal):
            try:
                float(literal)
            except ValueError:
                try:
                    parse_duration(literal)
                except TimeFormatError as exc:
                    self.problems.append(
                        CompileProblem(
                            at, f"{op} needs a number or a duration: {exc}", "bad-duration"
                        )
                    )
        elif literal is None or isinstance(literal, bool):
            self.problems.append(
                CompileProblem(at, f"{op} needs a number or a duration, not {literal!r}", "schema")
            )
