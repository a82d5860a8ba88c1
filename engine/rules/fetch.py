"""Fetch the records a rule reads for one alert: from the store (context records,
incidents), the ownership table, or the alert itself, as the dicts `match` and the
templates see. The rule's push-down (engine.rules.pushdown) narrows the store query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any, Protocol

from engine.model import Alert, ContextRecord, Incident
from engine.rules.compiler import CONTEXT_SOURCES, CompiledRule
from engine.rules.conditions import lookup
from engine.rules.pushdown import Resolved
from engine.rules.ruleset import OwnershipEntry
from engine.timeutil import format_ts

# Records are rebuilt for every alert, and the same timestamps come back alert after alert
# (a service's recent records by each of its alerts). strftime was the largest single cost
# of building them (docs/PERFORMANCE.md): a bounded cache of the formatted text removes it.
_format_ts = lru_cache(maxsize=16384)(format_ts)

# The most incidents read for a rule whose push-down does not narrow them below a status
# (see fetch_incidents).
INCIDENT_QUERY_LIMIT = 500
Record = dict[str, Any]


class ContextReader(Protocol):
    """The part of the store rules read (see engine.store.base.Store)."""

    def query_context(
        self,
        kind: str,
        *,
        start: datetime,
        end: datetime,
        service: str | None = None,
        limit: int | None = None,
    ) -> list[ContextRecord]: ...

    def list_incidents(
        self,
        *,
        limit: int | None = 50,
        status: str | None = None,
        service: str | None = None,
        team: str | None = None,
        fingerprint: str | None = None,
        since: datetime | None = None,
        any_of: Sequence[Mapping[str, str]] = (),
    ) -> list[Incident]: ...


@dataclass
class Fetched:
    """What fetch() read: `fetched` records from the source; `records`, the ones to match,
    already matched when `prematched` (the incidents fast path)."""

    fetched: int
    records: list[Record]
    prematched: bool = False


# --- records -------------------------------------------------------------------------


def context_record(rec: ContextRecord, anchor: float) -> Record:
    epoch = rec.ts.timestamp()
    return {
        **rec.fields,
        "id": rec.id,
        "service": rec.service,
        "ts": _format_ts(rec.ts),
        "age": round(anchor - epoch, 3),
        "path": rec.path,
        "_epoch": epoch,
    }


def incident_record(inc: Incident, anchor: float) -> Record:
    epoch = inc.opened_at.timestamp()
    opened = _format_ts(inc.opened_at)
    return {
        "id": inc.id,
        "path": inc.path,
        "ts": opened,
        "age": round(anchor - epoch, 3),
        "fingerprint": inc.fingerprint,
        "status": inc.status,
        "title": inc.title,
        "service": inc.service,
        "alertname": inc.alertname,
        "team": inc.team,
        "severity": inc.severity.word,
        "opened_at": opened,
        "last_seen": _format_ts(inc.last_seen),
        "resolved_at": _format_ts(inc.resolved_at) if inc.resolved_at else None,
        "repeat_count": inc.repeat_count,
        "attached_count": inc.attached_count,
        "_epoch": epoch,
    }


def alert_record(alert_scope: Mapping[str, Any], anchor: float) -> Record:
    return {
        **alert_scope,
        "ts": alert_scope["startsAt"],
        "age": 0,
        "path": "alert",
        "_epoch": anchor,
    }


# --- fetching ------------------------------------------------------------------------


def fetch(
    rule: CompiledRule,
    alert: Alert,
    scope: Mapping[str, Any],
    store: ContextReader,
    ownership: Sequence[OwnershipEntry] = (),
) -> Fetched:
    """The source's records in the rule's window, narrowed by the push-down."""
    pushed = rule.pushdown.resolve(scope)
    if pushed is None:
        return Fetched(0, [])  # the match compares with a value the alert lacks: no record
    anchor = alert.starts_at.timestamp()
    if rule.source in CONTEXT_SOURCES:
        assert rule.window is not None  # the compiler requires one
        start, end = alert.starts_at - rule.window.before, alert.starts_at + rule.window.after
        service = pushed.equals.get("service")
        services = pushed.among.get("service") if service is None else None
        if services is None:
            rows = store.query_context(rule.source, start=start, end=end, service=service)
        else:  # one indexed query per service of the `in:` list, merged newest first
            rows = [
                row
                for s in services
                for row in store.query_context(rule.source, start=start, end=end, service=s)
            ]
            rows.sort(key=_newest_first)
        return Fetched(len(rows), [context_record(r, anchor) for r in rows])
    if rule.source == "incidents":
        incidents = fetch_incidents(rule, alert, pushed, store)
        if rule.match is not None and _cheap(rule.match_fields):
            # The match reads fields straight from each Incident, so the full record
            # (timestamps formatted, ages) is built only for the incidents that match.
            # Same records, in the same order, as matching incident_record()s.
            matches = rule.match.bind(scope, _incident_access)
            records = [incident_record(i, anchor) for i in incidents if matches(i)]
            return Fetched(len(incidents), records, prematched=True)
        return Fetched(len(incidents), [incident_record(i, anchor) for i in incidents])
    if rule.source == "ownership":
        return Fetched(len(ownership), [e.as_record() for e in ownership])
    return Fetched(1, [alert_record(scope["alert"], anchor)])


def fetch_incidents(
    rule: CompiledRule, alert: Alert, pushed: Resolved, store: ContextReader
) -> list[Incident]:
    """The incidents an `incidents` rule reads: the push-down, then the window (by
    opening time), newest first."""
    equals = dict(pushed.equals)
    any_of = pushed.branches()  # the `any:` branches, with an `in:` list crossed in
    alertname = equals.pop("alertname", None)  # list_incidents ORs over it, no keyword
    if alertname is not None:
        # a = x AND (b1 OR b2) is (a = x AND b1) OR (a = x AND b2)
        any_of = [
            {**b, "alertname": alertname}
            for b in any_of
            if b.get("alertname", alertname) == alertname
        ]
        if pushed.branches() and not any_of:
            return []  # every branch wants another alertname
        any_of = any_of or [{"alertname": alertname}]
    # The limit. A push-down with more than the status (an incident's own columns, or a
    # disjunction of them) bounds the candidates to those the match may keep, e.g. for
    # incident.duplicate_open the open incidents with this fingerprint (at most one) or
    # this service and alertname: reading all of them is cheap, and any cap could drop
    # the incident the rule is looking for (the oldest come last). Without one (every
    # open incident, say), the newest INCIDENT_QUERY_LIMIT keep the cost bounded.
    narrow = bool(any_of) or any(
        equals.get(c) is not None for c in ("service", "team", "fingerprint")
    )
    since = alert.starts_at - rule.window.before if rule.window else None
    incidents = store.list_incidents(
        limit=None if narrow else INCIDENT_QUERY_LIMIT,
        status=equals.get("status"),
        service=equals.get("service"),
        team=equals.get("team"),
        fingerprint=equals.get("fingerprint"),
        since=since,
        any_of=any_of,
    )
    if rule.window:
        last = alert.starts_at.timestamp() + rule.window.after.total_seconds()
        incidents = [i for i in incidents if i.opened_at.timestamp() <= last]
    return incidents


def _newest_first(rec: ContextRecord) -> tuple[float, int]:
    """query_context's order (ts, then id, descending) across several answers."""
    return (-rec.ts.timestamp(), -int(rec.id) if rec.id.isdigit() else 0)


# Incident record fields that cost next to nothing to read, as incident_record gives them.
_CHEAP_INCIDENT_FIELDS: dict[str, Callable[[Incident], Any]] = {
    name: attrgetter(attr)
    for name, attr in {
        "id": "id",
        "path": "path",
        "fingerprint": "fingerprint",
        "status": "status",
        "title": "title",
        "service": "service",
        "alertname": "alertname",
        "team": "team",
        "severity": "severity.word",
        "repeat_count": "repeat_count",
        "attached_count": "attached_count",
    }.items()
}


def _cheap(fields: frozenset[str] | None) -> bool:
    return fields is not None and fields <= _CHEAP_INCIDENT_FIELDS.keys()


def _incident_access(path: tuple[str, ...]) -> Callable[[Incident], Any]:
    """Read a record field path straight from the Incident: what `lookup` gives on its
    incident_record (the first part is always present there, possibly None)."""
    get = _CHEAP_INCIDENT_FIELDS[path[0]]
    rest = path[1:]
    if not rest:
        return get
    return lambda i: lookup(get(i), rest)
