"""Pull sources (`prometheus`, `loki`): the query a rule declares, compiled and rendered.

A pull rule's query is a template with `$name` placeholders, each one a declared var
(`vars: {service: $alert.labels.service}`). A placeholder is replaced by the var's value
as a double-quoted string literal, escaped the way PromQL and LogQL read them (Go string
syntax: backslash, quote and control characters escaped), so a value can only ever be a
string literal of the query, never raw query text. Placeholders are found only outside
the query's own string literals; `$$` is a literal `$`; a placeholder that is not a
declared var is refused when the rule is compiled.

Nothing here does I/O: engine.pull runs the rendered queries after the incident is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.rules.conditions import MISSING, ConditionCompiler, Value
from engine.rules.problems import CompileProblem
from engine.timeutil import TimeFormatError, parse_duration

PULL_SOURCES = ("prometheus", "loki")
PULL_KEYS = ("query", "query_range", "step", "vars")
DEFAULT_STEP = timedelta(seconds=60)
MAX_POINTS = 11_000  # Prometheus refuses a range query with more points per series
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RECORD = {"id", "ts", "age", "path", "service", "labels"}
PULL_FIELDS: dict[str, set[str]] = {
    "prometheus": _RECORD | {"value", "values", "last", "max", "min", "avg"},
    "loki": _RECORD | {"level", "message"},
}
PULL_SNAPSHOT_FIELDS: dict[str, tuple[str, ...]] = {
    "prometheus": ("labels", "value", "last", "max", "ts"),
    "loki": ("service", "level", "message", "ts"),
}
# What `lint-rules` renders templates against (engine.rules.evaluate's sample records).
PULL_SAMPLE_FIELDS: dict[str, dict[str, Any]] = {
    "prometheus": {
        "labels": {"service": "sample-service", "code": "500"},
        "value": 0.12,
        "values": [[1767268740.0, 0.1], [1767268800.0, 0.12]],
        "last": 0.12,
        "max": 0.12,
        "min": 0.1,
        "avg": 0.11,
    },
    "loki": {
        "labels": {"service": "sample-service", "level": "error"},
        "level": "error",
        "message": "upstream timeout request 7",
    },
}


class QueryTemplateError(ValueError):
    pass


@dataclass(frozen=True)
class PullSpec:
    source: str  # "prometheus" | "loki"
    ranged: bool  # query_range (over the window, with a step) or an instant query
    parts: tuple[str | tuple[str], ...]  # literal text, or (var name,) for a placeholder
    vars: tuple[tuple[str, Value], ...]
    step: timedelta
    text: str  # the query as written

    def render(self, scope: Mapping[str, Any]) -> str | None:
        """The query with every placeholder a quoted literal; None when a var's value is
        missing (the alert lacks the label: the rule cannot apply)."""
        values: dict[str, str] = {}
        for name, value in self.vars:
            v = value.get(scope)
            if v is MISSING or v is None:
                return None
            values[name] = quote(v if isinstance(v, str) else _scalar_text(v))
        return "".join(p if isinstance(p, str) else values[p[0]] for p in self.parts)


def _scalar_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def quote(value: str) -> str:
    """`value` as a double-quoted PromQL / LogQL string literal (Go escape syntax)."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0 or code in (0x2028, 0x2029):
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")  # a lone surrogate cannot be in a query
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def parse_query(text: str) -> tuple[list[str | tuple[str]], list[str]]:
    """Split a query into literal text and placeholders. Returns (parts, names inside
    the query's string literals that look like placeholders). Raises QueryTemplateError
    for an unterminated string literal or a lone `$`."""
    parts: list[str | tuple[str]] = []
    in_strings: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'`":
            end = _string_end(text, i)
            literal = text[i:end]
            in_strings += [m.group(1) for m in re.finditer(r"\$([A-Za-z_]\w*)", literal)]
            buf.append(literal)
            i = end
        elif ch == "#":  # a comment, to the end of the line: copied as it is
            end = text.find("\n", i)
            end = n if end < 0 else end
            buf.append(text[i:end])
            i = end
        elif ch == "$":
            if text.startswith("$$", i):
                buf.append("$")
                i += 2
                continue
            m = _NAME.match(text, i + 1)
            if m is None:
                raise QueryTemplateError(
                    f"a lone `$` at offset {i}: write $$ for a literal $, or $NAME for a var"
                )
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append((m.group(0),))
            i = m.end()
        else:
            buf.append(ch)
            i += 1
    if buf:
        parts.append("".join(buf))
    return parts, in_strings


def _string_end(text: str, start: int) -> int:
    quote_char = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and quote_char != "`":
            i += 2
            continue
        if text[i] == quote_char:
            return i + 1
        i += 1
    raise QueryTemplateError(f"unterminated string literal starting at offset {start}")


def compile_pull(
    doc: Mapping[str, Any],
    source: str,
    has_window: bool,
    values: ConditionCompiler,
    problems: list[CompileProblem],
) -> PullSpec | None:
    """The pull spec of a rule document (None for a local source). `values` compiles the
    vars (only $alert.* and $params.* may be read)."""
    if source not in PULL_SOURCES:
        for key in PULL_KEYS:
            if key in doc:
                problems.append(
                    CompileProblem(
                        (key,), f"`{key}` is for pull sources ({', '.join(PULL_SOURCES)})", "schema"
                    )
                )
        return None
    allowed = ("query", "query_range") if source == "prometheus" else ("query_range",)
    given = [k for k in ("query", "query_range") if k in doc]
    if len(given) != 1 or given[0] not in allowed:
        problems.append(
            CompileProblem(
                (), f"a {source} rule needs exactly one of: {', '.join(allowed)}", "pull-query"
            )
        )
        return None
    key = given[0]
    ranged = key == "query_range"
    if ranged and not has_window:
        problems.append(
            CompileProblem(
                (), f"a {source} query_range reads the rule's window: add window:", "missing-window"
            )
        )
    declared = dict(doc.get("vars") or {})
    compiled_vars = tuple(
        (name, values.value(raw, ("vars", name))) for name, raw in declared.items()
    )
    text = str(doc[key])
    try:
        parts, in_strings = parse_query(text)
    except QueryTemplateError as exc:
        problems.append(CompileProblem((key,), str(exc), "pull-query"))
        return None
    for part in parts:
        if isinstance(part, tuple) and part[0] not in declared:
            problems.append(
                CompileProblem(
                    (key,),
                    f"placeholder ${part[0]} is not a declared var "
                    f"(declared: {', '.join(sorted(declared)) or 'none'})",
                    "undeclared-var",
                )
            )
    for name in in_strings:
        if name in declared:
            problems.append(
                CompileProblem(
                    (key,),
                    f"${name} inside a string literal is not replaced: write label=${name}, "
                    "the var becomes the quoted string",
                    "quoted-placeholder",
                )
            )
    step = DEFAULT_STEP
    if "step" in doc:
        try:
            step = parse_duration(str(doc["step"]))
        except TimeFormatError as exc:
            problems.append(CompileProblem(("step",), str(exc), "bad-duration"))
        if step <= timedelta(0):
            problems.append(CompileProblem(("step",), "step must be positive", "bad-duration"))
            step = DEFAULT_STEP
        if not ranged:
            problems.append(CompileProblem(("step",), "step is for query_range", "schema"))
    return PullSpec(source, ranged, tuple(parts), compiled_vars, step, text)
