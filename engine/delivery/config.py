"""The delivery configuration file (`--config FILE` / INCIDENT_PILOT_CONFIG).

Read with the rule loader's YAML reader and checked against schemas/config.schema.json,
so every mistake is a `Problem` at `file:line:col`, as lint-rules reports rule files.
Secrets are resolved here, once, from environment variables or files; a missing one is
a problem too, so `serve` refuses to start instead of failing at the first incident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.delivery import secrets as sec
from engine.model import Severity
from engine.rules.problems import KeyPath, Problem, SourceLocation
from engine.rules.schema_check import validate_document
from engine.rules.yamlsrc import YamlDoc, load_yaml
from engine.timeutil import parse_duration

SCHEMA = "config.schema.json"
SLACK_ENV = "INCIDENT_PILOT_SLACK_WEBHOOK"  # the Go original's variable: a Slack sink alone
DEFAULT_ROUTE = "default"
STDOUT = "stdout"
# Secret fields per sink type, and whether the sink needs it (pagerduty: here or per route).
SINK_SECRETS = {"slack": "webhook_url", "pagerduty": "routing_key", "opsgenie": "api_key"}
SINK_SECRETS["webhook"] = "secret"
LITERAL_SECRETS = {"webhook_url", "routing_key", "api_key", "secret", "token", "password"}
# Route entry options and the sink types they apply to.
ENTRY_OPTIONS = {
    "channel": {"slack"},
    "routing_key_env": {"pagerduty"},
    "routing_key_file": {"pagerduty"},
    "responders": {"opsgenie"},
    "tags": {"opsgenie"},
}


@dataclass(frozen=True)
class DeliveryPolicy:
    # A failing delivery is retried until it is max_age old (its last attempt is made
    # then), so an outage of up to a day loses nothing. max_attempts (the bound before
    # retries went by age) still loads; when set it also bounds the attempts.
    max_age: float = 86_400.0
    max_attempts: int | None = None
    base_delay: float = 2.0  # seconds; attempt n waits uniform(0, min(max, base * 2**(n-1)))
    max_delay: float = 120.0  # so a page goes out within ~2 minutes of a receiver's recovery
    max_retry_after: float = 3600.0  # a longer Retry-After is cut to this
    lease: float = 120.0  # a claimed delivery is retried by another worker after this
    workers: int = 4
    poll_interval: float = 1.0


@dataclass(frozen=True)
class SinkSpec:
    name: str
    type: str
    options: dict[str, Any]  # without secrets
    secrets: dict[str, str] = field(default_factory=dict)  # field -> "env:X" / "file:/p"

    @property
    def timeout(self) -> float:
        return float(self.options.get("timeout", 10.0))


@dataclass(frozen=True)
class RouteEntry:
    sink: str
    min_severity: Severity = Severity.INFO
    options: dict[str, Any] = field(default_factory=dict)  # channel, routing_key_ref, ...


@dataclass
class DeliveryConfig:
    source: str | None
    policy: DeliveryPolicy
    sinks: dict[str, SinkSpec]
    routes: dict[str, tuple[RouteEntry, ...]]
    secrets: dict[str, sec.Secret] = field(default_factory=dict)  # ref -> value


def _seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


class _Checker:
    def __init__(self, doc: YamlDoc | None, display: str, environ: Mapping[str, str]):
        self.doc, self.display, self.environ = doc, display, environ
        self.problems: list[Problem] = []
        self.secrets: dict[str, sec.Secret] = {}

    def problem(self, path: KeyPath, message: str, code: str = "config") -> None:
        loc = self.doc.location(path) if self.doc else SourceLocation(self.display)
        self.problems.append(Problem(loc, message, code, key_path=path))

    def secret(self, spec: Mapping[str, Any], name: str, path: KeyPath, need: bool) -> str | None:
        both = f"{name}_env" in spec and f"{name}_file" in spec
        if both:
            self.problem((*path, f"{name}_file"), f"give {name}_env or {name}_file, not both")
        ref = sec.ref_of(spec, name)
        if ref is None:
            if need:
                self.problem(path, f"missing {name}_env (an environment variable) or {name}_file")
            return None
        key = f"{name}_env" if ref.startswith("env:") else f"{name}_file"
        try:
            self.secrets[ref] = sec.resolve(ref, self.environ)
        except sec.SecretError as exc:
            self.problem((*path, key), f"{name}: {exc}", "secret")
        return ref


def _literal_secret_problems(doc: YamlDoc) -> list[Problem]:
    out = []
    data = doc.data if isinstance(doc.data, dict) else {}
    # (a sink's path prefix, or a route entry's full path; a mapping of name -> spec)
    groups: list[tuple[str | KeyPath, Any]] = [("sinks", data.get("sinks"))]
    routes = data.get("routes")
    for team, entries in (routes or {}).items() if isinstance(routes, dict) else []:
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            groups.append((("routes", team, i), {"": entry}))
    for prefix, mapping in groups:
        for name, spec in (mapping or {}).items() if isinstance(mapping, dict) else []:
            for key in spec if isinstance(spec, dict) else []:
                if key in LITERAL_SECRETS:
                    base = prefix if isinstance(prefix, tuple) else (prefix, name)
                    path = (*base, key)
                    out.append(
                        Problem(
                            doc.location(path),
                            f"{key} must not be written in the config: name an environment "
                            f"variable ({key}_env: NAME) or a file ({key}_file: /path) instead",
                            "literal-secret",
                            key_path=path,
                        )
                    )
    return out


def _build(doc_data: dict[str, Any], ck: _Checker, environ: Mapping[str, str]) -> DeliveryConfig:
    raw_policy = doc_data.get("delivery") or {}
    # The schema has checked each key names a DeliveryPolicy field and each value's type
    # (a number, or a duration string for the seconds fields), so Any is honest here.
    policy_fields: dict[str, Any] = {
        k: (_seconds(v) if isinstance(v, str) else v) for k, v in raw_policy.items()
    }
    policy = DeliveryPolicy(**policy_fields)
    sinks: dict[str, SinkSpec] = {STDOUT: SinkSpec(STDOUT, "stdout", {})}
    for name, spec in (doc_data.get("sinks") or {}).items():
        kind = spec["type"]
        path: KeyPath = ("sinks", name)
        options: dict[str, Any] = {
            k: v for k, v in spec.items() if not k.endswith(("_env", "_file"))
        }
        options.pop("type")
        if "timeout" in options:
            options["timeout"] = _seconds(options["timeout"])
        if kind != "stdout" and SinkSpec(name, kind, options).timeout >= policy.lease:
            where = (*path, "timeout") if "timeout" in options else ("delivery", "lease")
            ck.problem(where, f"sink {name}: timeout must be shorter than delivery.lease")
        refs = {}
        if kind in SINK_SECRETS:
            field_name = SINK_SECRETS[kind]
            ref = ck.secret(spec, field_name, path, need=kind != "pagerduty")
            if ref:
                refs[field_name] = ref
        sinks[name] = SinkSpec(name, kind, options, refs)
    routes: dict[str, tuple[RouteEntry, ...]] = {}
    for team, entries in (doc_data.get("routes") or {}).items():
        built = []
        for i, entry in enumerate(entries):
            path = ("routes", team, i)
            target = sinks.get(entry["sink"])
            if target is None:
                known = ", ".join(sorted(sinks))
                ck.problem((*path, "sink"), f"no sink named {entry['sink']!r} (sinks: {known})")
                continue
            options = {}
            for key, value in entry.items():
                if key in ("sink", "min_severity"):
                    continue
                if target.type not in ENTRY_OPTIONS[key]:
                    ck.problem((*path, key), f"{key} does not apply to a {target.type} sink")
                elif key.startswith("routing_key"):
                    options["routing_key_ref"] = ck.secret(entry, "routing_key", path, True)
                else:
                    options[key] = value
            keyless = "routing_key" not in target.secrets and "routing_key_ref" not in options
            if target.type == "pagerduty" and keyless:
                ck.problem(path, f"sink {target.name} has no routing_key_env/_file: give one here")
            severity = Severity.parse(entry.get("min_severity", "info"))
            built.append(RouteEntry(target.name, severity, options))
        routes[team] = tuple(built)
    routes.setdefault(DEFAULT_ROUTE, (RouteEntry(STDOUT),))
    if environ.get(SLACK_ENV, "").strip() and "slack" not in sinks:
        ref = f"env:{SLACK_ENV}"
        ck.secrets[ref] = sec.resolve(ref, environ)
        sinks["slack"] = SinkSpec("slack", "slack", {}, {"webhook_url": ref})
        routes[DEFAULT_ROUTE] = (*routes[DEFAULT_ROUTE], RouteEntry("slack"))
    return DeliveryConfig(None, policy, sinks, routes, ck.secrets)


def load_config(
    path: str | Path | None, environ: Mapping[str, str] | None = None
) -> tuple[DeliveryConfig | None, list[Problem]]:
    """The configuration in `path` (None: the built-in one: stdout, plus Slack when
    INCIDENT_PILOT_SLACK_WEBHOOK is set). Returns (None, problems) when unusable."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    doc = None
    display = str(path) if path else "<built-in configuration>"
    if path:
        doc, problems = load_yaml(Path(path), display)
        if doc is None:
            return None, problems
        literal = _literal_secret_problems(doc)
        hidden = {p.key_path for p in literal}
        problems += literal
        problems += [p for p in validate_document(doc, SCHEMA) if p.key_path not in hidden]
        if any(p.level == "error" for p in problems):
            return None, sorted(problems, key=lambda p: (p.location.line, p.location.col))
        data = doc.data
    ck = _Checker(doc, display, environ)
    config = _build(data, ck, environ)
    if ck.problems:
        return None, sorted(ck.problems, key=lambda p: (p.location.line, p.location.col))
    config.source = str(path) if path else None
    return config, []


def format_problem(problem: Problem) -> str:
    """`file:line:col: message`, as lint-rules prints."""
    return f"{problem.location}: {problem.message}"
