"""Validate a parsed YAML document against a schema in `schemas/`, in plain sentences.

Every jsonschema error becomes a `Problem` at the line of the offending key or value.
`oneOf` / `anyOf` failures are never dumped branch by branch: the branch the author was
evidently writing (same type, or the one whose required key is present) is explained, or
else one short sentence lists the accepted forms, generated from the schema itself.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from engine.paths import schema_path
from engine.rules.problems import KeyPath, Problem
from engine.rules.yamlsrc import YamlDoc

# How a pattern-constrained string is described, by $defs name (or property name).
_PATTERN_TEXT = {
    "id": "a dotted lower-case id such as deploy.recent_correlated",
    "name": "a name made of letters, digits and _ (not starting with a digit), such as min_errors",
    "fieldPath": "a field path such as service or labels.team",
    "duration": "a duration such as 90s, 10m, 1h30m or 2d",
}
# What a value described by a $defs entry is called in a sentence, and in the plural.
_DEF_NOUN = {
    "aggregation": ("aggregation", "aggregations"),
    "fieldCondition": ("condition", "conditions"),
    "conditions": ("a block of conditions", "condition blocks"),
    "evidenceItem": ("evidence item", "evidence items"),
    "template": ("template", "templates"),
    "valueLadder": ("ladder", "ladders"),
    "severityStep": ("step", "{when, then} steps"),
    "confidenceStep": ("step", "{when, then} steps"),
    "scalar": ("value", "values"),
    "fieldPath": ("field path", "field paths"),
    "name": ("name", "names"),
    "duration": ("duration", "durations"),
    "severityWord": ("severity", "severities"),
    "confidenceWord": ("confidence", "confidences"),
}
# Values under keys the author names (aggregate.NAME) or generic keys (then): call them by
# what they are rather than by the key.
_SUBJECT_DEFS = {
    "aggregation",
    "fieldCondition",
    "valueLadder",
    "evidenceItem",
    "severityWord",
    "confidenceWord",
}
_TYPE_TEXT = {
    "string": "text",
    "number": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
    "object": "a mapping of keys",
    "array": "a list",
    "null": "nothing",
}
_SCALAR_TYPES = {"string", "number", "boolean", "null"}
_SHALLOW = {"type", "enum", "const"}


@dataclass(frozen=True)
class _Schema:
    root: dict[str, Any]
    validator: Draft202012Validator
    def_names: dict[int, str]  # id() of a $defs entry -> its name
    patterns: dict[str, str]  # regex -> human description

    def resolve(self, schema: Any) -> Any:
        while isinstance(schema, Mapping) and str(schema.get("$ref", "")).startswith("#/"):
            target: Any = self.root
            for part in schema["$ref"][2:].split("/"):
                target = target[part]
            schema = target
        return schema

    def def_name(self, schema: Any) -> str | None:
        return self.def_names.get(id(schema)) or self.def_names.get(id(self.resolve(schema)))


@cache
def load_schema(name: str) -> _Schema:
    """The schema file `name` from schemas/, with a cached Draft 2020-12 validator."""
    root = json.loads(schema_path(name).read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(root)
    defs = root.get("$defs", {})
    patterns = {}
    for key, sub in [*defs.items(), *root.get("properties", {}).items()]:
        if isinstance(sub, Mapping) and "pattern" in sub:
            text = (
                _PATTERN_TEXT.get(key)
                or sub.get("description")
                or f"text matching {sub['pattern']}"
            )
            patterns[sub["pattern"]] = text
    return _Schema(root, Draft202012Validator(root), {id(v): k for k, v in defs.items()}, patterns)


def validate_document(
    doc: YamlDoc, schema_name: str, *, rule_id: str | None = None
) -> list[Problem]:
    """Every schema problem of `doc` against schemas/`schema_name`, sorted by line, each a
    human sentence at the line of the offending key or value."""
    schema = load_schema(schema_name)
    explainer = _Explainer(schema, doc, rule_id)
    problems: dict[tuple[int, int, str], Problem] = {}
    for error in schema.validator.iter_errors(doc.data):
        for problem in explainer.explain(error):
            key = (problem.location.line, problem.location.col, problem.message)
            problems.setdefault(key, problem)
    return sorted(problems.values(), key=lambda p: (p.location.line, p.location.col))


validate = validate_document


def show(value: Any) -> str:
    """A value as an SRE would recognise it from the YAML file."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 50 else text[:46] + '..."'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return repr(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}.get(type(value), "?")


def join_or(parts: list[str]) -> str:
    if len(parts) <= 2:
        return " or ".join(parts)
    return ", ".join(parts[:-1]) + ", or " + parts[-1]


def _close(word: Any, choices: Iterable[Any]) -> str | None:
    if not isinstance(word, str):
        return None
    options = [c for c in choices if isinstance(c, str)]
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not found:
        found = [c for c in options if c.lower() == word.lower()]
    return found[0] if found else None


class _Explainer:
    def __init__(self, schema: _Schema, doc: YamlDoc, rule_id: str | None):
        self.schema, self.doc, self.rule_id = schema, doc, rule_id

    def problem(self, path: KeyPath, message: str, *, prefer: str = "value") -> Problem:
        return Problem(
            self.doc.location(path, prefer=prefer),
            message,
            "schema",
            rule_id=self.rule_id,
            key_path=path,
        )

    # --- describing what the schema accepts -------------------------------------------

    def alternatives(self, schema: Any) -> list[str]:
        name = self.schema.def_name(schema)
        schema = self.schema.resolve(schema)
        if not isinstance(schema, Mapping):
            return ["anything"]
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return [alt for sub in schema[key] for alt in self.alternatives(sub)]
        if "enum" in schema:
            return [v if isinstance(v, str) else show(v) for v in schema["enum"]]
        if "const" in schema:
            return [schema["const"] if isinstance(schema["const"], str) else show(schema["const"])]
        kind = schema.get("type")
        if name == "conditions":
            return ["a block of conditions"]
        if kind == "array":
            return [f"a list of {self.plural(schema.get('items', {}))}"]
        if kind == "object":
            return [self.braces(schema)]
        if "pattern" in schema:
            return [self.schema.patterns.get(schema["pattern"], "text")]
        if isinstance(kind, list):
            if set(kind) >= _SCALAR_TYPES:
                return ["a single value (text, a number, true/false or null)"]
            # JSON Schema names types with strings; the schemas here are our own.
            type_names: list[str] = kind
            return [join_or([_TYPE_TEXT.get(k, k) for k in type_names])]
        return [_TYPE_TEXT.get(kind, "a value")] if isinstance(kind, str) else ["a value"]

    def braces(self, schema: Mapping[str, Any]) -> str:
        props = list(schema.get("properties", {}))
        required = list(schema.get("required", []))
        if not props:
            return "a mapping"
        if len(props) <= 2:
            return "{" + ", ".join(props) + "}"
        shown = required or props[:3]
        return "{" + ", ".join(shown) + ", ...}"

    def plural(self, items: Any) -> str:
        name = self.schema.def_name(items)
        if name in _DEF_NOUN:
            return _DEF_NOUN[name][1]
        return join_or(self.alternatives(items)) + " items"

    def subject(self, error: ValidationError) -> str:
        name = self.schema.def_name(error.schema)
        if name in _SUBJECT_DEFS:
            return _DEF_NOUN[name][0]
        for part in reversed(error.absolute_path):
            if isinstance(part, str):
                return part
        return "the file" if not error.absolute_path else "this item"

    # --- turning errors into problems -------------------------------------------------

    def explain(self, error: ValidationError) -> list[Problem]:
        path: KeyPath = tuple(error.absolute_path)
        kind = error.validator
        if "propertyNames" in error.absolute_schema_path:
            key = error.instance
            return [
                self.problem(
                    (*path, key), f"key {show(key)} is not {self.pattern_text(error)}", prefer="key"
                )
            ]
        if kind in ("oneOf", "anyOf"):
            return self.explain_choice(error, path)
        if kind == "additionalProperties":
            return self.unknown_keys(error, path)
        if kind == "required":
            missing = [k for k in error.validator_value if k not in error.instance]
            return [
                self.problem(path, f"missing required key {json.dumps(k)}", prefer="key")
                for k in missing
            ]
        return [self.problem(path, self.sentence(error))]

    def pattern_text(self, error: ValidationError) -> str:
        pattern = error.schema.get("pattern") if isinstance(error.schema, Mapping) else None
        return self.schema.patterns.get(pattern or "", f"text matching {pattern}")

    def unknown_keys(self, error: ValidationError, path: KeyPath) -> list[Problem]:
        allowed = list(error.schema.get("properties", {}))
        out = []
        for key in error.instance:
            if key in allowed:
                continue
            message = f"unknown key {json.dumps(key)}"
            guess = _close(key, allowed)
            if guess:
                message += f" (did you mean {json.dumps(guess)}?)"
            elif allowed:
                message += f"; allowed here: {', '.join(allowed)}"
            out.append(self.problem((*path, key), message, prefer="key"))
        return out

    def sentence(self, error: ValidationError) -> str:
        kind, expected, inst = error.validator, error.validator_value, error.instance
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        if kind == "type":
            alts = self.alternatives(error.schema)
            wanted = join_or([f"a mapping {a}" if a.startswith("{") else a for a in alts])
            return f"expected {wanted}, got {show(inst)}"
        if kind in ("enum", "const"):
            choices = expected if kind == "enum" else [expected]
            listed = join_or([c if isinstance(c, str) else show(c) for c in choices])
            text = f"{self.subject(error)} must be {'one of ' if len(choices) > 2 else ''}{listed}"
            return text + self.got(inst, choices)
        if kind == "pattern" or (kind == "minLength" and "pattern" in schema):
            return f"{show(inst)} is not {self.pattern_text(error)}"
        if kind == "minLength":
            return (
                "must not be empty"
                if expected == 1
                else f"must be at least {expected} characters long"
            )
        if kind == "maxLength":
            return f"must be at most {expected} characters long"
        if kind == "minItems":
            return (
                "must not be an empty list" if expected == 1 else f"needs at least {expected} items"
            )
        if kind == "maxItems":
            return f"may have at most {expected} items"
        if kind == "minProperties":
            props = list(schema.get("properties", {}))
            hint = f" (use {join_or(props)})" if props else ""
            return f"must not be empty{hint}"
        bounds = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "more than",
            "exclusiveMaximum": "less than",
            "multipleOf": "a multiple of",
        }
        if kind in bounds:
            return f"must be {bounds[kind]} {show(expected)} (got {show(inst)})"
        if kind == "uniqueItems":
            return "the list must not repeat an item"
        if kind == "not" or kind is None:
            return f"{show(inst)} is not allowed here"
        return f"{show(inst)} is not valid here ({kind} {show(expected)})"

    def got(self, inst: Any, choices: Iterable[Any]) -> str:
        guess = _close(inst, choices)
        if guess:
            return f" (got {show(inst)}; did you mean {guess}?)"
        return f" (got {show(inst)})"

    def explain_choice(self, error: ValidationError, path: KeyPath) -> list[Problem]:
        branches = error.validator_value
        chosen = self.choose_branch(branches, error.instance)
        if chosen is not None:
            errors = [e for e in error.context or () if e.relative_schema_path[0] == chosen]
            deep = [
                e for e in errors if tuple(e.absolute_path) != path or e.validator not in _SHALLOW
            ]
            if errors and deep:
                return [p for e in errors for p in self.explain(e)]
        if not error.context:  # valid under several branches: cannot happen with these schemas
            return [
                self.problem(path, f"{self.subject(error)} is ambiguous: it matches several forms")
            ]
        alts = [alt for branch in branches for alt in self.alternatives(branch)]
        text = f"{self.subject(error)} must be {'one of ' if len(alts) > 2 else ''}{join_or(alts)}"
        scalar = not isinstance(error.instance, dict | list)
        words = [a for a in alts if " " not in a]
        return [self.problem(path, text + (self.got(error.instance, words) if scalar else ""))]

    def choose_branch(self, branches: list[Any], inst: Any) -> int | None:
        """The branch the author evidently meant: the only one of the instance's type, or
        among mappings the only one whose required key is present."""
        kind = _json_type(inst)
        fits = [i for i, b in enumerate(branches) if self.type_fits(b, kind)]
        if len(fits) > 1 and kind == "object":
            claimed = [i for i in fits if self.claims(branches[i], inst)]
            fits = claimed if claimed else fits
        return fits[0] if len(fits) == 1 else None

    def types(self, schema: Any) -> set[str] | None:
        schema = self.schema.resolve(schema)
        if not isinstance(schema, Mapping):
            return None
        if "type" in schema:
            kind = schema["type"]
            return set(kind) if isinstance(kind, list) else {kind}
        if "enum" in schema or "const" in schema:
            return {_json_type(v) for v in schema.get("enum", [schema.get("const")])}
        for key in ("oneOf", "anyOf"):
            if key in schema:
                found: set[str] = set()
                for sub in schema[key]:
                    sub_types = self.types(sub)
                    if sub_types is None:
                        return None
                    found |= sub_types
                return found
        return None

    def type_fits(self, schema: Any, kind: str) -> bool:
        allowed = self.types(schema)
        if allowed is None:
            return True
        return kind in allowed or (kind == "integer" and "number" in allowed)

    def claims(self, schema: Any, inst: Mapping[str, Any]) -> bool:
        schema = self.schema.resolve(schema)
        if not isinstance(schema, Mapping):
            return False
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return any(self.claims(sub, inst) for sub in schema[key])
        return any(k in inst for k in schema.get("required", []))
