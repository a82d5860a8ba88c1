"""Lookup tables an SRE keeps next to the rules (`rules.d/tables/*.yaml`, ownership.yaml).

A table is keyed data, validated like a rule (schemas/table.schema.json, then the entry
checks here, every problem at its file:line). Two kinds:

- `graph`: each key lists other keys (`checkout-api: [payments, inventory]`: the
  services checkout-api depends on). A lookup follows the edges up to `hops` steps, or
  the reverse edges (the services that depend on a key);
- `keyed`: each key maps to a record of fields (`HighErrorRate: {url: ...}`), optionally
  checked against declared `fields` and `required` names.

`ownership.yaml` is a keyed table named `ownership` (its entries keyed by service).
Tables are immutable once loaded, so a graph walk is cached per (key, hops, direction).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.rules.problems import KeyPath, Problem
from engine.rules.schema_check import validate_document
from engine.rules.yamlsrc import YamlDoc

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "boolean": (bool,),
    "list": (list,),
    "map": (dict,),
}
MAX_HOPS = 10  # the schema's bound on `hops`; a walk never goes further


@dataclass(frozen=True)
class TableEntry:
    table: str
    key: str
    value: Any  # graph: a tuple of keys; keyed: a mapping of fields
    file: str
    line: int

    @property
    def path(self) -> str:
        return f"tables/{self.table}/{self.key}"

    def snapshot(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"key": self.key, "value": value}

    def to_dict(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {
            "table": self.table,
            "key": self.key,
            "path": self.path,
            "value": value,
            "file": self.file,
            "line": self.line,
        }


Chain = tuple[TableEntry, ...]


@dataclass(frozen=True)
class Table:
    name: str
    kind: str  # "graph" | "keyed" (ownership.yaml is keyed)
    file: str
    entries: Mapping[str, TableEntry]
    description: str = ""
    _walks: dict[tuple[str, int, bool], dict[str, Chain]] = field(
        default_factory=dict, compare=False, repr=False
    )
    _reverse: dict[str, list[TableEntry]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind == "graph":
            for entry in self.entries.values():
                for target in entry.value:
                    self._reverse.setdefault(target, []).append(entry)

    def get(self, key: Any) -> TableEntry | None:
        return self.entries.get(key) if isinstance(key, str) else None

    def walk(self, start: str, hops: int = 1, reverse: bool = False) -> dict[str, Chain]:
        """Graph tables: every key reachable from `start` in 1..hops steps (following the
        reverse edges when `reverse`), nearest first, each with the chain of entries that
        links it (the first entry is start's own, or, reversed, the entry naming start).
        `start` itself is never in the answer, even on a cycle."""
        memo = (start, hops, reverse)
        found = self._walks.get(memo)
        if found is not None:
            return found
        found = {}
        frontier: list[tuple[str, Chain]] = [(start, ())]
        for _ in range(min(hops, MAX_HOPS)):
            following: list[tuple[str, Chain]] = []
            for key, chain in frontier:
                for target, entry in self._edges(key, reverse):
                    if target == start or target in found:
                        continue
                    found[target] = (*chain, entry)
                    following.append((target, found[target]))
            frontier = following
        if len(self._walks) < 4096:  # bounded: keys come from alerts
            self._walks[memo] = found
        return found

    def _edges(self, key: str, reverse: bool) -> list[tuple[str, TableEntry]]:
        if reverse:
            return [(entry.key, entry) for entry in self._reverse.get(key, ())]
        entry = self.entries.get(key)
        return [] if entry is None else [(target, entry) for target in entry.value]


def table_file_problems(doc: YamlDoc, name: str) -> list[Problem]:
    """What is wrong with a table file: its name, the schema, then each entry."""
    problems = list(validate_document(doc, "table.schema.json"))
    if not TABLE_NAME.match(name):
        message = (
            f"table name {name!r} (the file name) must be lower case letters, digits, _ and -,"
            " starting with a letter"
        )
        problems.append(Problem(doc.location(()), message, "table-name"))
    if problems:
        return problems
    data = doc.data
    if data["kind"] == "graph":
        for extra in ("fields", "required"):
            if extra in data:
                message = f"`{extra}` describes keyed tables; a graph's entries are lists of keys"
                problems.append(
                    Problem(doc.location((extra,)), message, "table", key_path=(extra,))
                )
        for key, targets in data["entries"].items():
            if key in targets:
                at = ("entries", key)
                message = f"{key!r} lists itself"
                problems.append(Problem(doc.location(at), message, "table", key_path=at))
        return problems
    return problems + _keyed_problems(doc)


def _keyed_problems(doc: YamlDoc) -> list[Problem]:
    data = doc.data
    declared: dict[str, str] | None = data.get("fields")
    required = list(data.get("required") or ())
    problems = []
    for name in required:
        if declared is not None and name not in declared:
            at = ("required", required.index(name))
            message = f"required field {name!r} is not one of the declared fields"
            problems.append(
                Problem(doc.location(at, prefer="value"), message, "table", key_path=at)
            )
    for key, entry in data["entries"].items():
        for name in required:
            if name not in entry:
                at = ("entries", key)
                message = f"entry {key!r} lacks the required field {name!r}"
                problems.append(Problem(doc.location(at), message, "table", key_path=at))
        if declared is None:
            continue
        for name, value in entry.items():
            where: KeyPath = ("entries", key, name)
            kind = declared.get(name)
            if kind is None:
                close = difflib.get_close_matches(name, list(declared), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                message = f"{name!r} is not a declared field of this table{hint}"
                problems.append(Problem(doc.location(where), message, "table", key_path=where))
            elif not _fits(value, kind):
                message = f"{name!r} must be a {kind}, not {type(value).__name__} {value!r}"
                problems.append(
                    Problem(doc.location(where, prefer="value"), message, "table", key_path=where)
                )
    return problems


def _fits(value: Any, kind: str) -> bool:
    if kind == "number" and isinstance(value, bool):
        return False
    return value is None or isinstance(value, FIELD_TYPES[kind])


def build_table(doc: YamlDoc, name: str, display: str) -> Table:
    """A checked table document as a Table (call after table_file_problems is empty)."""
    data = doc.data
    entries = {}
    for key, value in data["entries"].items():
        line = doc.location(("entries", key)).line
        stored = tuple(value) if data["kind"] == "graph" else dict(value)
        entries[key] = TableEntry(name, key, stored, display, line)
    return Table(name, data["kind"], display, entries, data.get("description", ""))


def ownership_table(owners: Mapping[str, tuple[dict[str, Any], str, int]]) -> Table:
    """ownership.yaml as the keyed table `ownership`: service -> {team, channel, ...}."""
    entries = {
        service: TableEntry(
            "ownership", service, {k: v for k, v in record.items() if k != "path"}, file, line
        )
        for service, (record, file, line) in owners.items()
    }
    files = sorted({e.file for e in entries.values()})
    return Table("ownership", "keyed", ", ".join(files), entries, "Which team owns which service.")


def with_test_tables(
    base: Mapping[str, Table], raw: Mapping[str, Any] | None, file: str
) -> dict[str, Table]:
    """`base` with the tables a rule test (or a replay context) gives: name -> entries.
    A table of `base` keeps its kind; a new one is a graph when every entry is a list."""
    tables = dict(base)
    for name, given in (raw or {}).items():
        if not isinstance(given, Mapping):
            raise ValueError(f"tables.{name}: expected a mapping of entries")
        before = base.get(name)
        graph = all(isinstance(v, list) for v in given.values())
        kind = before.kind if before is not None else ("graph" if graph else "keyed")
        entries = {}
        for key, value in given.items():
            if kind == "graph" and not isinstance(value, list):
                raise ValueError(f"tables.{name}.{key}: a graph entry is a list of keys")
            if kind == "keyed" and not isinstance(value, Mapping):
                raise ValueError(f"tables.{name}.{key}: a keyed entry is a mapping of fields")
            stored = tuple(str(v) for v in value) if kind == "graph" else dict(value)
            entries[str(key)] = TableEntry(name, str(key), stored, file, 0)
        tables[name] = Table(name, kind, file, entries)
    return tables
