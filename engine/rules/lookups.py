"""Joins: values a rule takes from a lookup table, keyed by alert fields.

Written wherever a value is accepted, as a mapping:

    service: {in: {table: dependencies, key: $alert.labels.service, hops: 2}}
    p99: {above: {table: slo, key: $alert.labels.service, field: p99_ms}}

A graph table gives the keys reachable from `key` in 1..hops steps (`reverse: true`:
the keys whose entries lead to it); a keyed table gives the entry (or one `field` of
it). The rule scope carries the rule set's tables under TABLES. An `in:` operand may
also be one value that is a list (`$params.services`, a lookup): `Spread`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.rules.conditions import (
    MISSING,
    AllOf,
    AnyOf,
    ConditionCompiler,
    FieldTest,
    NotOf,
    Value,
    lookup,
    split_path,
)
from engine.rules.problems import CompileProblem, KeyPath
from engine.rules.tables import MAX_HOPS, Chain, Table

TABLES = "_tables"  # the scope key of the tables (a Mapping[str, Table])


@dataclass(frozen=True)
class Lookup(Value):
    table: str = ""
    key: Value = field(default_factory=Value)
    field: tuple[str, ...] = ()
    hops: int = 1
    reverse: bool = False

    def _table(self, scope: Mapping[str, Any]) -> Table | None:
        tables = scope.get(TABLES)
        return None if tables is None else tables.get(self.table)

    def get(self, scope: Mapping[str, Any]) -> Any:
        table = self._table(scope)
        key = self.key.get(scope)
        if table is None or not isinstance(key, str):
            return MISSING
        if table.kind == "graph":
            return list(table.walk(key, self.hops, self.reverse))
        entry = table.get(key)
        if entry is None:
            return MISSING
        return lookup(entry.value, self.field) if self.field else entry.value

    def chains(self, scope: Mapping[str, Any]) -> dict[Any, Chain]:
        """Each value this lookup gives -> the table entries that linked it (evidence)."""
        table = self._table(scope)
        key = self.key.get(scope)
        if table is None or not isinstance(key, str):
            return {}
        if table.kind == "graph":
            return table.walk(key, self.hops, self.reverse)
        entry = table.get(key)
        value = self.get(scope)
        if entry is None or value is MISSING:
            return {}
        items = value if isinstance(value, list) else [value]
        return {item: (entry,) for item in items if isinstance(item, str | int | float)}

    def __str__(self) -> str:
        text = f"{{table: {self.table}, key: {self.key}"
        if self.field:
            text += f", field: {'.'.join(self.field)}"
        if self.hops != 1:
            text += f", hops: {self.hops}"
        if self.reverse:
            text += ", reverse: true"
        return text + "}"


@dataclass(frozen=True)
class Spread(Value):
    """An `in:` / `not_in:` operand written as one value that holds the list."""

    inner: Value = field(default_factory=Value)
    spread: ClassVar[bool] = True

    def get(self, scope: Mapping[str, Any]) -> list[Any]:
        value = self.inner.get(scope)
        if value is MISSING or value is None:
            return []
        if isinstance(value, list | tuple | set | frozenset):
            return list(value)
        return [value]

    def __str__(self) -> str:
        return str(self.inner)


def joins_of(condition: Any) -> list[tuple[tuple[str, ...], Lookup]]:
    """(field path, lookup) of every field test in `condition` whose operand is a
    lookup, directly or spread: the joins whose table entries a cited record links to."""
    if isinstance(condition, AllOf | AnyOf):
        return [j for part in condition.parts for j in joins_of(part)]
    if isinstance(condition, NotOf):
        return []  # a record kept by `not` was not linked by the table
    if isinstance(condition, FieldTest):
        operand = condition.operand
        inner = operand.inner if isinstance(operand, Spread) else operand
        if isinstance(inner, Lookup) and condition.op in ("equals", "in", "contains"):
            return [(condition.field, inner)]
    return []


class LookupCompiler:
    """The ConditionCompiler hook for values written as a table lookup, and for `in:`
    operands written as one value (engine.rules.lookups)."""

    def __init__(
        self,
        compiler: ConditionCompiler,
        tables: Mapping[str, Table] | None,
        params: Mapping[str, Any],
        problems: list[CompileProblem],
    ) -> None:
        self.compiler, self.tables, self.params, self.problems = compiler, tables, params, problems

    def __call__(self, kind: str, raw: Any, at: KeyPath) -> Value:
        if kind == "spread":
            return Spread(inner=raw)
        key = self.compiler.value(raw["key"], (*at, "key"))
        hops = self._hops(raw.get("hops", 1), (*at, "hops"))
        lookup_value = Lookup(
            table=raw["table"],
            key=key,
            field=split_path(raw["field"]) if "field" in raw else (),
            hops=hops,
            reverse=bool(raw.get("reverse", False)),
        )
        self._check(lookup_value, raw, at)
        return lookup_value

    def _hops(self, raw: Any, at: KeyPath) -> int:
        value = parse_param(raw, self.params)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HOPS:
            self.problems.append(
                CompileProblem(
                    at, f"hops must be a whole number 1..{MAX_HOPS}, not {value!r}", "schema"
                )
            )
            return 1
        return value

    def _check(self, value: Lookup, raw: Mapping[str, Any], at: KeyPath) -> None:
        if self.tables is None:
            return
        table = self.tables.get(value.table)
        if table is None:
            known = ", ".join(sorted(self.tables)) or "none"
            message = f"no table {value.table!r} (known: {known}; tables live in rules.d/tables/)"
            self.problems.append(CompileProblem((*at, "table"), message, "unknown-table"))
            return
        graph_only = [k for k in ("hops", "reverse") if k in raw]
        if table.kind != "graph" and graph_only:
            message = (
                f"{graph_only[0]} follows the edges of a graph table; {table.name} is {table.kind}"
            )
            self.problems.append(CompileProblem((*at, graph_only[0]), message, "bad-lookup"))
        if table.kind == "graph" and "field" in raw:
            message = f"{table.name} is a graph table: its entries are lists, they have no fields"
            self.problems.append(CompileProblem((*at, "field"), message, "bad-lookup"))


def parse_param(raw: Any, params: Mapping[str, Any]) -> Any:
    """A literal, or the value of a `$params.NAME` (params are constants)."""
    if isinstance(raw, str) and raw.startswith("$params."):
        return lookup(params, split_path(raw[len("$params.") :]))
    return raw
