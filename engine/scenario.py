"""A scenario (an alert, context at relative times, open incidents) loaded into a real store.

Rule tests and `incident-pilot replay` both use it, so they run the server's code path:
records go through the same parser as POST /context/*, incidents through record_firing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from engine.alerts import parse_alert
from engine.ingest import parse_record
from engine.model import CONTEXT_KINDS, Alert
from engine.pipeline import build_draft
from engine.rules.ruleset import OwnershipEntry, RuleSet
from engine.rules.tables import ownership_table, with_test_tables
from engine.store.base import Store
from engine.timeutil import format_ts, parse_relative, parse_ts

DEFAULT_NOW = "2026-01-01T12:00:00Z"
_TIME_KEYS = ("when", "ts", "startsAt", "endsAt")


def resolve_times(obj: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """Turn relative times (`-3m`) in the usual time keys into RFC 3339."""
    out = dict(obj)
    for key in _TIME_KEYS:
        if isinstance(out.get(key), str | datetime):
            out[key] = format_ts(parse_relative(out[key], now))
    return out


@dataclass
class Scenario:
    now: datetime
    alert: Alert
    context: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    incidents: Sequence[Mapping[str, Any]] = ()
    ownership: tuple[OwnershipEntry, ...] | None = None
    tables: Mapping[str, Any] | None = None  # name -> entries, added to the rule set's

    @classmethod
    def from_dict(
        cls, raw: Mapping[str, Any], *, now: datetime | None = None, file: str = ""
    ) -> Scenario:
        if now is None:
            now = parse_ts(raw.get("now") or DEFAULT_NOW)
        alert = parse_alert(resolve_times(raw["alert"], now), "alert", now)
        ownership = None
        if raw.get("ownership") is not None:
            ownership = tuple(
                OwnershipEntry(
                    e["service"],
                    e["team"],
                    file,
                    {k: v for k, v in e.items() if k not in ("service", "team")},
                )
                for e in raw["ownership"]
            )
        return cls(
            now,
            alert,
            raw.get("context") or {},
            raw.get("incidents") or (),
            ownership,
            raw.get("tables"),
        )

    def ruleset(self, base: RuleSet, file: str = "") -> RuleSet:
        """`base` with this scenario's ownership entries and tables in place."""
        ownership = self.ownership if self.ownership is not None else base.ownership
        tables = dict(base.tables)
        if self.ownership is not None:
            owners = {e.service: (e.as_record(), e.file, 0) for e in self.ownership}
            tables["ownership"] = ownership_table(owners)
        tables = with_test_tables(tables, self.tables, file)
        return replace(base, ownership=ownership, tables=tables)

    def load_into(self, store: Store) -> None:
        records = []
        for kind in CONTEXT_KINDS:
            for i, rec in enumerate(self.context.get(kind) or ()):
                records.append(
                    parse_record(kind, resolve_times(rec, self.now), f"{kind}[{i}]", self.now)
                )
        if records:
            store.add_context(records)
        for i, raw in enumerate(self.incidents):
            opened = parse_relative(raw.get("opened", "-10m"), self.now)
            alert_raw = {"labels": raw["labels"], "startsAt": format_ts(opened)}
            if raw.get("fingerprint"):
                alert_raw["fingerprint"] = raw["fingerprint"]
            alert = parse_alert(alert_raw, f"incidents[{i}]", self.now)
            draft = build_draft(alert, [], incident_id=raw["id"])
            if raw.get("title") or raw.get("team"):
                draft = replace(draft, title=raw.get("title") or draft.title, team=raw.get("team"))
            store.record_firing(draft, now=opened, renotify_after=timedelta(0))
            if raw.get("status") == "resolved":
                store.resolve_incident(raw["id"], at=opened, note="resolved in scenario")
