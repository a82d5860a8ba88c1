"""The eight shipped rules (rules.d/*.yaml) written by hand in plain Python.

The yardstick for the YAML interpreter's overhead: the same store queries
(`query_context` / `list_incidents`, same arguments) and the same findings, field for
field, as `engine.rules.evaluate.evaluate_rules` produces from the shipped YAML, without
the interpreter (no condition trees, scope dicts, record dicts or Jinja templates). It
lives only in bench/: the YAML files stay the single source of truth for the product, and
`bench` checks the two agree on every alert it runs.

Shared helpers a hand-writer would reuse are imported, not re-implemented: the log
message masking (`engine.rules.patterns.mask`), the exact nearest rank of a percentile
(`engine.rules.aggregate.nearest_rank`) and the time formatting.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import yaml

from engine.links import incident_url
from engine.model import Alert, Confidence, ContextRecord, Evidence, Finding, Incident, Severity
from engine.paths import rules_dir
from engine.rules.aggregate import nearest_rank
from engine.rules.fetch import ContextReader
from engine.rules.patterns import mask
from engine.rules.ruleset import OwnershipEntry
from engine.timeutil import format_duration, format_ts

ERROR_LEVELS = frozenset(("ERROR", "FATAL", "CRITICAL", "PANIC", "ALERT", "EMERGENCY"))
DEFAULT_TEAM = "platform"


def _relative(seconds: float) -> str:
    if abs(seconds) < 1:
        return "at the same moment as"
    return f"{format_duration(abs(seconds))} {'before' if seconds >= 0 else 'after'}"


def _tidy(n: float) -> float | int:
    return int(n) if float(n).is_integer() else round(n, 3)


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[nearest_rank(p, len(ordered)) - 1]


def _age(anchor: float, ts_epoch: float) -> float:
    return round(anchor - ts_epoch, 3)


def _snapshot(rec: ContextRecord, names: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        if name == "service":
            out[name] = rec.service
        elif name == "ts":
            out[name] = format_ts(rec.ts)
        elif name in rec.fields:
            out[name] = rec.fields[name]
    return out


# --- deploy.recent_correlated --------------------------------------------------------

DEPLOY_FIELDS = ("service", "commit", "author", "ts")


def deploy_recent_correlated(alert: Alert, store: ContextReader, anchor: float) -> Finding | None:
    service = alert.labels.get("service")
    if service is None:
        return None
    start = alert.starts_at - timedelta(minutes=30)
    end = alert.starts_at + timedelta(minutes=1)
    rows = store.query_context("deploys", start=start, end=end, service=service)
    if not rows:
        return None
    last = rows[0]  # newest first; the first of equal timestamps, as max() picks
    last_epoch = last.ts.timestamp()
    for r in rows[1:]:
        e = r.ts.timestamp()
        if e > last_epoch:
            last, last_epoch = r, e
    age = _age(anchor, last_epoch)
    recent = age <= 600
    level = "high" if recent else "medium"
    more = f" (the latest of {len(rows)} deploys in the 30m before)" if len(rows) > 1 else ""
    summary = (
        f"{service} was deployed {_relative(age)} the alert started: commit "
        f"{last.fields.get('commit')} by {last.fields.get('author')}{more}."
    )
    suggestion = (
        f"Check what commit {last.fields.get('commit')} changed; if it is the cause, roll back "
        f"with `kubectl rollout undo deployment/{service}` and watch the alert clear."
    )
    evidence = tuple(Evidence(r.path, _snapshot(r, DEPLOY_FIELDS)) for r in rows[:5])
    return Finding(
        "deploy.recent_correlated",
        Severity.parse(level),
        Confidence.parse(level),
        summary,
        suggestion,
        evidence,
        {},
    )


# --- incident.duplicate_open -----------------------------------------------------------


def _incident_snapshot(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id,
        "title": inc.title,
        "status": inc.status,
        "fingerprint": inc.fingerprint,
        "service": inc.service,
        "opened_at": format_ts(inc.opened_at),
    }


def incident_duplicate_open(alert: Alert, store: ContextReader, anchor: float) -> Finding | None:
    # The query the rule's push-down makes (engine.rules.pushdown): this fingerprint, or
    # this service and alertname when the alert has both labels; no limit. (For the rare
    # fingerprint that reads as a number the rule falls back to the newest 500 instead.)
    service, name = alert.labels.get("service"), alert.labels.get("alertname")
    any_of = [{"fingerprint": alert.fingerprint}]
    if service is not None and name is not None:
        any_of.append({"service": service, "alertname": name})
    rows = store.list_incidents(limit=None, status="open", any_of=any_of)
    first: Incident | None = None
    first_epoch = 0.0
    for inc in rows:
        if inc.status != "open":
            continue
        same = inc.fingerprint == alert.fingerprint or (
            service is not None
            and name is not None
            and inc.service == service
            and inc.alertname == name
        )
        if not same:
            continue
        e = inc.opened_at.timestamp()
        if first is None or e < first_epoch:
            first, first_epoch = inc, e
    if first is None:
        return None
    same_alert = first.fingerprint == alert.fingerprint
    covers = "alert" if same_alert else "service and alertname"
    summary = (
        f'Already being worked on: open incident {first.id} ("{first.title}", opened '
        f"{_relative(_age(anchor, first_epoch))} this alert started) covers the same {covers}."
    )
    suggestion = (
        f"Follow incident {first.id} rather than opening a new one: "
        f"`incident-pilot incidents show {first.id}`, or open {incident_url('', first.id)}."
    )
    return Finding(
        "incident.duplicate_open",
        Severity.INFO,
        Confidence.HIGH if same_alert else Confidence.MEDIUM,
        summary,
        suggestion,
        (Evidence(first.path, _incident_snapshot(first)),),
        {"duplicate_of": first.id},
    )


# --- logs.error_spike -----------------------------------------------------------------

LOG_FIELDS = ("service", "level", "message", "ts")


def logs_error_spike(alert: Alert, store: ContextReader, anchor: float) -> Finding | None:
    service = alert.labels.get("service")
    if service is None:
        return None
    start = alert.starts_at - timedelta(minutes=10)
    rows = store.query_context("logs", start=start, end=alert.starts_at, service=service)
    errors = [r for r in rows if r.fields.get("level") in ERROR_LEVELS]
    count = len(errors)
    if count < 5:
        return None
    groups: dict[str, list[ContextRecord]] = {}
    for r in errors:
        message = r.fields.get("message")
        if message is not None:
            groups.setdefault(mask(str(message)), []).append(r)
    total = sum(len(g) for g in groups.values()) or 1
    pattern, members = max(groups.items(), key=lambda kv: len(kv[1]))  # first of the largest
    share = len(members) / total
    summary = (
        f"{count} ERROR lines from {service} in the 10m before the alert; {len(members)} of "
        f'them ({share * 100:.0f}%) match "{pattern}".'
    )
    suggestion = (
        f'Search the {service} logs for "{pattern}" and check the dependency it names; '
        f"start from the sample lines cited below."
    )
    evidence = tuple(Evidence(r.path, _snapshot(r, LOG_FIELDS)) for r in members[:5])
    return Finding(
        "logs.error_spike",
        Severity.HIGH if count >= 50 else Severity.MEDIUM,
        Confidence.HIGH if share >= 0.5 else Confidence.MEDIUM,
        summary,
        suggestion,
        evidence,
        {},
    )


# --- container.oom_killed ---------------------------------------------------------------

OOM = re.compile(r"(?i)oomkilled|out of memory|oom-kill")
OOM_KILLED_PROCESS = re.compile(r"Killed process (?P<pid>\d+) \((?P<process>[^)]+)\)")


def _latest(rows: Sequence[ContextRecord]) -> ContextRecord:
    last = rows[0]  # the first of equal timestamps, as max() picks
    for r in rows[1:]:
        if r.ts.timestamp() > last.ts.timestamp():
            last = r
    return last


def _distinct_attribute(rows: Sequence[ContextRecord], name: str) -> list[str]:
    values = ((r.fields.get("attributes") or {}).get(name) for r in rows)
    return sorted({str(v) for v in values if v is not None})


def _matching(rows: Sequence[ContextRecord], regex: re.Pattern[str]) -> list[ContextRecord]:
    return [
        r
        for r in rows
        if r.fields.get("message") is not None and regex.search(str(r.fields["message"]))
    ]


def container_oom_killed(alert: Alert, store: ContextReader, anchor: float) -> Finding | None:
    service = alert.labels.get("service")
    if service is None:
        return None
    start = alert.starts_at - timedelta(minutes=15)
    end = alert.starts_at + timedelta(minutes=1)
    kills = _matching(store.query_context("logs", start=start, end=end, service=service), OOM)
    if not kills:
        return None
    captured: dict[str, dict[str, str]] = {}
    processes: dict[str, int] = {}
    for r in kills:
        found = OOM_KILLED_PROCESS.search(str(r.fields["message"]))
        if found is not None:
            captured[r.id] = {k: v for k, v in found.groupdict().items() if v is not None}
            process = captured[r.id].get("process")
            if process is not None:
                processes[process] = processes.get(process, 0) + 1
    count = len(kills)
    last = _latest(kills)
    pods = _distinct_attribute(kills, "pod")
    killed = max(processes.items(), key=lambda kv: kv[1]) if processes else None
    text = f"{service} was OOM-killed {count} time{'s' if count != 1 else ''} in the 15m before "
    text += f"the alert (pods {', '.join(pods)})" if pods else "the alert"
    if killed:
        text += f"; the kernel killed {killed[0]} {killed[1]} time{'s' if killed[1] != 1 else ''}"
    summary = (
        f"{text}; the last kill was {_relative(_age(anchor, last.ts.timestamp()))} it started: "
        f'"{last.fields.get("message")}".'
    )
    suggestion = (
        "Compare the container's memory use with its limit (`kubectl describe pod` shows "
        '"Last State: Terminated, Reason: OOMKilled")'
        + (f", and what {killed[0]} allocates" if killed else "")
        + "; raise the limit or find the leak"
        + (" before the crash loop empties the deployment" if count >= 3 else "")
        + "."
    )
    evidence = []
    named = [r for r in kills if killed and captured.get(r.id, {}).get("process") == killed[0]]
    cited = kills[:5] + [r for r in named[:5] if r not in kills[:5]]
    for r in cited:
        snapshot = _snapshot(r, LOG_FIELDS)
        if captured.get(r.id):
            snapshot["captured"] = captured[r.id]
        evidence.append(Evidence(r.path, snapshot))
    return Finding(
        "container.oom_killed",
        Severity.HIGH if count >= 3 else Severity.MEDIUM,
        Confidence.HIGH if "OOMKilled" in str(last.fields.get("message")) else Confidence.MEDIUM,
        summary,
        suggestion,
        tuple(evidence),
        {},
    )


# --- leader.election_thrash -------------------------------------------------------------

LEADER_TRANSITION = re.compile(
    r"(?i)became (the )?leader|lost leadership|new leader elected|stepping down as leader"
)


def leader_election_thrash(alert: Alert, store: ContextReader, anchor: float) -> Finding | None:
    service = alert.labels.get("service")
    if service is None:
        return None
    start = alert.starts_at - timedelta(minutes=10)
    rows = store.query_context("logs", start=start, end=alert.starts_at, service=service)
    transitions = _matching(rows, LEADER_TRANSITION)
    hosts = _distinct_attribute(transitions, "host")
    count = len(transitions)
    if count < 3 or len(hosts) < 2:
        return None
    last = _latest(transitions)
    listed = ", ".join(hosts)
    summary = (
        f"Leadership of {service} changed {count} times in the 10m before the alert, across "
        f"{len(hosts)} hosts ({listed}); the last transition was "
        f'{_relative(_age(anchor, last.ts.timestamp()))} it started: "{last.fields.get("message")}".'
    )
    suggestion = (
        f"Check the network between {listed} and the election timeouts (lease, heartbeat) "
        f"against the GC pauses of {service}."
    )
    evidence = tuple(Evidence(r.path, _snapshot(r, LOG_FIELDS)) for r in transitions[:10])
    return Finding(
        "leader.election_thrash",
        Severity.MEDIUM,
        Confidence.MEDIUM,
        summary,
        suggestion,
        evidence,
        {},
    )


# --- routing.team -----------------------------------------------------------------------


def routing_team(alert: Alert, ownership: Sequence[OwnershipEntry]) -> Finding:
    service = alert.labels.get("service")
    owner = next((e for e in ownership if service is not None and e.service == service), None)
    label = alert.labels.get("team")
    if label is not None:
        team, why = label, " (from the alert's team label)"
        evidence = Evidence("alert/labels/team", {"labels.team": label})
    elif owner is not None:
        team = owner.team
        why = f" (ownership.yaml lists {owner.team} as owner of {owner.service})"
        evidence = Evidence(owner.path, {"service": owner.service, "team": owner.team})
    else:
        team = DEFAULT_TEAM
        why = " (the default team: no team label and no ownership entry for this service)"
        evidence = Evidence(
            "rules/routing.team/params/default_team", {"default_team": DEFAULT_TEAM}
        )
    if label is not None or owner is not None:
        suggestion = f"Page {team}'s on-call."
    else:
        suggestion = (
            f"Page {team}'s on-call, and add the service to rules.d/ownership.yaml so the "
            f"next alert routes itself."
        )
    return Finding(
        "routing.team",
        Severity.INFO,
        Confidence.HIGH if label is not None or owner is not None else Confidence.LOW,
        f"Routed to team {team}{why}.",
        suggestion,
        (evidence,),
        {"team": team},
    )


# --- traces.tail_latency ----------------------------------------------------------------

TRACE_FIELDS = ("trace_id", "duration_ms", "ts")


def traces_tail_latency(alert: Alert, store: ContextReader, anchor: float) -> Finding | None:
    service = alert.labels.get("service")
    if service is None:
        return None
    start = alert.starts_at - timedelta(minutes=15)
    rows = store.query_context("traces", start=start, end=alert.starts_at, service=service)
    timed = [(float(r.fields["duration_ms"]), r) for r in rows if "duration_ms" in r.fields]
    durations = [d for d, _ in timed]
    p99 = _percentile(durations, 99)
    if len(rows) < 5 or p99 is None or p99 <= 1000:
        return None
    p50 = _percentile(durations, 50)
    timed.sort(key=lambda dr: dr[0], reverse=True)
    slowest = [r for _, r in timed[:5]]
    p99_out, p50_out = _tidy(p99), _tidy(p50) if p50 is not None else None
    summary = (
        f"p99 latency of {service} was {p99_out} ms over {len(rows)} traces in the 15m before "
        f"the alert (threshold 1000 ms; p50 {p50_out} ms)."
    )
    top = slowest[0]
    suggestion = (
        f"Open the slowest trace, {top.fields.get('trace_id')} ({top.fields.get('duration_ms')} "
        f"ms), and find the span that dominates it."
    )
    evidence = tuple(Evidence(r.path, _snapshot(r, TRACE_FIELDS)) for r in slowest)
    return Finding(
        "traces.tail_latency",
        Severity.HIGH if p99 >= 5000 else Severity.MEDIUM,
        Confidence.HIGH if len(rows) >= 20 else Confidence.MEDIUM,
        summary,
        suggestion,
        evidence,
        {},
    )


# --- dependency.upstream_failing --------------------------------------------------------

# The dependency graph, read from the shipped table file as a hand-writer would.
DEPENDENCIES: dict[str, list[str]] = (
    yaml.safe_load((rules_dir() / "tables" / "dependencies.yaml").read_text("utf-8"))["entries"]
    or {}
)
MAX_HOPS = 3


def _upstream(service: str) -> dict[str, list[str]]:
    """service -> the entries (keys) on the path to it, up to MAX_HOPS, nearest first."""
    found: dict[str, list[str]] = {}
    frontier = [(service, [])]
    for _ in range(MAX_HOPS):
        nxt = []
        for key, path in frontier:
            for dep in DEPENDENCIES.get(key, ()):
                if dep != service and dep not in found:
                    found[dep] = [*path, key]
                    nxt.append((dep, found[dep]))
        frontier = nxt
    return found


def dependency_upstream_failing(
    alert: Alert, store: ContextReader, anchor: float
) -> Finding | None:
    service = alert.labels.get("service")
    upstream = _upstream(service) if service is not None else {}
    if not upstream:
        return None
    rows = store.list_incidents(
        limit=None,
        status="open",
        since=alert.starts_at - timedelta(minutes=30),
        any_of=[{"service": s} for s in upstream],
    )
    last = anchor + 60
    live = [i for i in rows if i.opened_at.timestamp() <= last and i.service in upstream]
    if not live:
        return None
    root = min(live, key=lambda i: i.opened_at.timestamp())
    age = _age(anchor, root.opened_at.timestamp())
    summary = (
        f"A symptom of an upstream failure: {root.service}, which {service} depends on, has "
        f'open incident {root.id} ("{root.title}", opened {_relative(age)} this alert started).'
    )
    suggestion = (
        f"Work on {root.id} first; {service} should recover with {root.service}: "
        f"`incident-pilot incidents show {root.id}`, or open {incident_url('', root.id)}."
    )
    evidence = [Evidence(root.path, _incident_snapshot(root))]
    for key in upstream[root.service or ""]:
        entry = {"key": key, "value": list(DEPENDENCIES[key])}
        evidence.append(Evidence(f"tables/dependencies/{key}", entry))
    return Finding(
        "dependency.upstream_failing",
        Severity.INFO,
        Confidence.HIGH if age >= 0 else Confidence.MEDIUM,
        summary,
        suggestion,
        tuple(evidence),
        {"symptom_of": root.id},
    )


# --- all eight, in the interpreter's (file) order ----------------------------------------

RULES: tuple[tuple[str, Callable[..., Finding | None]], ...] = (
    ("container.oom_killed", container_oom_killed),
    ("dependency.upstream_failing", dependency_upstream_failing),
    ("deploy.recent_correlated", deploy_recent_correlated),
    ("incident.duplicate_open", incident_duplicate_open),
    ("leader.election_thrash", leader_election_thrash),
    ("logs.error_spike", logs_error_spike),
    ("routing.team", lambda alert, store, anchor, ownership: routing_team(alert, ownership)),
    ("traces.tail_latency", traces_tail_latency),
)


def evaluate(
    alert: Alert,
    store: ContextReader,
    ownership: Sequence[OwnershipEntry] = (),
    timings: dict[str, list[float]] | None = None,
) -> list[Finding]:
    """The findings of the eight rules for `alert`, like `evaluate_rules(...).findings`."""
    anchor = alert.starts_at.timestamp()
    out: list[Finding] = []
    if timings is None:
        for rule_id, fn in RULES:
            finding = (
                routing_team(alert, ownership)
                if rule_id == "routing.team"
                else fn(alert, store, anchor)
            )
            if finding is not None:
                out.append(finding)
        return out
    from time import perf_counter

    for rule_id, fn in RULES:
        t = perf_counter()
        finding = (
            routing_team(alert, ownership)
            if rule_id == "routing.team"
            else fn(alert, store, anchor)
        )
        timings.setdefault(rule_id, []).append(perf_counter() - t)
        if finding is not None:
            out.append(finding)
    return out
