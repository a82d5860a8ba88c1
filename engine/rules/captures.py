"""Captures and sizes: regex named groups read from matched records, and the check that a
list is never compared with a number.

`capture: {message: 'Killed process (?P<pid>\\d+) \\((?P<process>[^)]+)\\)'}` gives every
matched record a `captured` mapping (`captured.process` = "java"). Captures are taken after
`match`, from the matched records only, so a captured value is always a piece of a record
the rule itself counted (and cites, when its evidence cites that record). The records of the
store are never changed: a record with captures is a copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.rules.aggregate import LIST_AGGREGATIONS
from engine.rules.conditions import MISSING, lookup, split_path
from engine.rules.problems import CompileProblem

CAPTURED = "captured"
LIST_PARTS = ("samples", "patterns", "values")


@dataclass(frozen=True)
class Capture:
    field: tuple[str, ...]
    regex: re.Pattern[str]


def compile_captures(
    raw: Mapping[str, Any] | None,
    check_field: Callable[[tuple[str, ...]], str | None],
    problems: list[CompileProblem],
) -> tuple[tuple[Capture, ...], set[str]]:
    """The captures of a rule and the group names they define."""
    captures: list[Capture] = []
    groups: set[str] = set()
    for key, pattern in (raw or {}).items():
        at = ("capture", key)
        path = split_path(str(key))
        problem = (
            "a capture reads a field of the record, not another capture"
            if path[0] == CAPTURED
            else check_field(path)
        )
        if problem:
            problems.append(CompileProblem(at, problem, "unknown-field"))
            continue
        try:
            regex = re.compile(str(pattern))
        except re.error as exc:
            problems.append(
                CompileProblem(at, f"invalid regular expression {pattern!r}: {exc}", "bad-regex")
            )
            continue
        names = set(regex.groupindex)
        if not names:
            problems.append(
                CompileProblem(
                    at,
                    f"the capture {pattern!r} has no named group: name what it captures, "
                    r"e.g. 'Killed process (?P<pid>\d+)'",
                    "bad-capture",
                )
            )
            continue
        for name in sorted(names & groups):
            problems.append(
                CompileProblem(
                    at,
                    f"the group {name!r} is already captured from another field: rename one",
                    "bad-capture",
                )
            )
        groups |= names
        captures.append(Capture(path, regex))
    return tuple(captures), groups


def apply_captures(captures: Sequence[Capture], records: list[dict[str, Any]]) -> list[Any]:
    """Copies of the matched records, each with `captured`: the groups that matched (a
    record whose field does not match keeps an empty mapping; it still counts)."""
    out = []
    for record in records:
        got: dict[str, str] = {}
        for capture in captures:
            value = lookup(record, capture.field)
            if value is MISSING or value is None:
                continue
            found = capture.regex.search(str(value))
            if found is not None:
                got.update((k, v) for k, v in found.groupdict().items() if v is not None)
        out.append({**record, CAPTURED: got})
    return out


def list_vs_number(
    kinds: Mapping[str, str], params: Mapping[str, Any], path: tuple[str, ...], op: str, raw: Any
) -> str | None:
    """The problem of `path: {op: raw}` when `path` names a list and `op` compares a number
    (it would never hold); None otherwise. `kinds`: aggregate / let name -> kind."""
    if op not in ("at_least", "at_most", "above", "below"):
        return None
    head, kind = path[0], kinds.get(path[0])
    if path == ("matched",):
        what = "the list of matched records (`count` is their number)"
    elif len(path) == 1 and kind in LIST_AGGREGATIONS:
        what = f"a `{kind}` list"
    elif len(path) == 2 and kind in ("pattern_of", "dominant") and path[1] in LIST_PARTS:
        what = f"a list ({path[1]} of a `{kind}`)"
    elif head == "params" and isinstance(lookup(params, path[1:]), list):
        what = "a list param"
    else:
        return None
    key = ".".join(path)
    size_op = "size_at_most" if op in ("at_most", "below") else "size_at_least"
    return (
        f"{key} is {what}, and `{op}` compares a number, so this never holds: compare the "
        f"list's size instead, `{key}: {{{size_op}: {raw}}}` (or aggregate a number with "
        "`count_distinct`)"
    )
