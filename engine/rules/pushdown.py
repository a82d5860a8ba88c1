"""The part of a rule's `match` the store can answer: equalities on indexed columns.

Derived once from the compiled condition tree (`derive`), resolved per alert (`resolve`).
A push-down only ever narrows what is fetched to a superset of what the full `match`
keeps: the match still runs in Python over the records the store returns. So it keeps

- the equalities at the top of `match` (ANDed with the rest of it, also inside `all:`)
  on the source's indexed columns;
- for incidents, the first top-level `any:` whose every branch is a conjunction with at
  least one equality on a column the store can OR over (Store.list_incidents `any_of`):
  per branch, the map of those equalities. A branch without one would make the
  disjunction unbounded, so such an `any:` is not pushed down at all;
- the `in:` tests at the top of `match` on those columns, whatever gives their list (a
  list, `$params.services`, a table lookup): per alert, the list of values (`among`).
  For incidents each value becomes one `any_of` map (crossed with the `any:` branches),
  so `service: {in: <the alerting service's dependencies>}` reads each dependency's
  incidents from the index; for context records, one indexed query per service. A list
  longer than MAX_AMONG is not pushed (the match still applies it).

An equality whose `$reference` is missing (or None) never holds (`equals` needs a value):
at the top that means no record can match; in a branch, that branch cannot. Only operands
for which `equals` is plain text equality are pushed (not numbers or durations written
as text, which `equals` compares by value: "3" equals "3.0").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.rules.conditions import (
    MISSING,
    AllOf,
    AnyOf,
    Condition,
    FieldTest,
    Value,
    listed,
    plain_text,
)
from engine.store.base import ANY_OF_COLUMNS  # the columns list_incidents can OR over

# Per source, the record fields the store can filter on with an index.
INCIDENT_COLUMNS = ("status", "service", "team", "fingerprint", "alertname")
DEFAULT_COLUMNS = ("service",)  # context records (service, ts) index; ownership by service

Equalities = tuple[tuple[str, Value], ...]
MAX_AMONG = 100  # values of one pushed `in:`; beyond, the match alone applies it


@dataclass(frozen=True)
class Resolved:
    """A push-down for one alert: `equals` ANDed, and (when not empty) at least one of the
    `any_of` maps, each an AND of column = value."""

    equals: dict[str, str] = field(default_factory=dict)
    any_of: list[dict[str, str]] = field(default_factory=list)
    among: dict[str, list[str]] = field(default_factory=dict)  # column -> one of these

    def branches(self, columns: Collection[str] = ANY_OF_COLUMNS) -> list[dict[str, str]]:
        """`any_of` with each `among` column on `columns` crossed in: the maps of which at
        least one holds (empty: no disjunction). Equalities stay in `equals`."""
        out = self.any_of
        for column, values in self.among.items():
            if column not in columns or column in self.equals:
                continue
            out = [{**b, column: v} for b in out or [{}] for v in values if b.get(column, v) == v]
        return out


@dataclass(frozen=True)
class Pushdown:
    equals: Equalities = ()  # top-level column = value, ANDed
    any_of: tuple[Equalities, ...] = ()  # per branch of one `any:`, ORed; () = none
    among: tuple[tuple[str, Any], ...] = ()  # top-level column in <operand of `in:`>

    def value(self, column: str) -> Value | None:
        """The top-level equality on `column`, if there is one."""
        return next((v for c, v in self.equals if c == column), None)

    def resolve(self, scope: Mapping[str, Any]) -> Resolved | None:
        """The push-down with the alert's values; None when no record can match (an
        equality at the top, or in every branch, reads a value the alert lacks)."""
        equals = _resolve(self.equals, scope)
        if equals is None:
            return None
        branches: list[dict[str, str]] = []
        for branch in self.any_of:
            resolved = _resolve(branch, scope)
            if resolved is None:
                continue  # this branch cannot match
            if not resolved:
                branches = []  # a live branch the store cannot narrow: no any_of
                break
            branches.append(resolved)
        else:
            if self.any_of and not branches:
                return None
        among: dict[str, list[str]] = {}
        for column, operand in self.among:
            values = _values(listed(operand, scope))
            if values is None:
                continue  # not all plain text, or too many: left to the match
            if column in equals:
                values = [v for v in values if v == equals[column]]
            if column in among:
                values = [v for v in values if v in among[column]]
            if not values:
                return None  # no value to be among
            among[column] = values
        return Resolved(equals, branches, among)


def _values(xs: list[Any]) -> list[str] | None:
    """The texts of an `in:` list to push (absent values can never match, so they are
    dropped); None when one is compared by value, or there are too many."""
    present = [x for x in xs if x is not MISSING and x is not None]
    if len(present) > MAX_AMONG or not all(plain_text(x) for x in present):
        return None
    return list(dict.fromkeys(present))


def _resolve(equalities: Equalities, scope: Mapping[str, Any]) -> dict[str, str] | None:
    """column -> value of the equalities that can be pushed; None when one cannot hold."""
    out: dict[str, str] = {}
    for column, value in equalities:
        x = value.get(scope)
        if x is MISSING or x is None:
            return None
        if not plain_text(x):
            continue  # compared by value in Python: leave it to the match
        if out.setdefault(column, x) != x:
            return None  # column = a and column = b
    return out


def derive(match: Condition | None, source: str) -> Pushdown:
    """The push-down of a compiled `match` for a rule reading `source`."""
    if match is None:
        return Pushdown()
    columns = INCIDENT_COLUMNS if source == "incidents" else DEFAULT_COLUMNS
    conjuncts = _conjuncts(match)
    equals = tuple(eq for part in conjuncts if (eq := _equality(part, columns)) is not None)
    among = tuple(
        (part.field[0], part.operand)
        for part in conjuncts
        if isinstance(part, FieldTest)
        and part.op == "in"
        and len(part.field) == 1
        and part.field[0] in columns
    )
    any_of: tuple[Equalities, ...] = ()
    if source == "incidents":
        for part in conjuncts:
            if isinstance(part, AnyOf) and (branches := _branches(part)) is not None:
                any_of = branches
                break
    return Pushdown(equals, any_of, among)


def _conjuncts(condition: Condition) -> list[Condition]:
    """The parts that must all hold (nested `all:` flattened)."""
    if isinstance(condition, AllOf):
        return [c for part in condition.parts for c in _conjuncts(part)]
    return [condition]


def _equality(condition: Condition, columns: Collection[str]) -> tuple[str, Value] | None:
    if (
        isinstance(condition, FieldTest)
        and condition.op == "equals"
        and len(condition.field) == 1
        and condition.field[0] in columns
    ):
        return condition.field[0], condition.operand
    return None


def _branches(any_of: AnyOf) -> tuple[Equalities, ...] | None:
    """Per branch, its equalities on ANY_OF_COLUMNS; None when a branch has none (or is
    not a conjunction), or there are no branches."""
    out = []
    for branch in any_of.parts:
        found = tuple(
            eq for part in _conjuncts(branch) if (eq := _equality(part, ANY_OF_COLUMNS)) is not None
        )
        if not found:
            return None
        out.append(found)
    return tuple(out) or None
