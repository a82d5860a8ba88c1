"""`SQLStore`: the one implementation of `Store`, over a dialect (SQLite or PostgreSQL).

Every method is one transaction of the dialect: `write` for changes (committed before
the method returns, retried where the engine asks for it), `read` for questions. The
SQL of incidents and the outbox lives in engine.store.incidents and .outbox; context
records are here. What the two engines do differently is the dialect's (dialect.py).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from engine.model import CONTEXT_KINDS, Alert, ContextRecord, Finding, Incident, Severity
from engine.store import codec, firing, incidents, outbox, pulls, retention, search, tallies
from engine.store.base import (
    AlertOutcome,
    AlertRecord,
    Delivery,
    IncidentDraft,
    NewContext,
    NewPull,
    PlanDeliveries,
    Pull,
    planned,
)
from engine.store.codec import epoch, from_epoch
from engine.store.dialect import Conn, Dialect
from engine.store.migrations import apply_migrations

PROBE_SERVICE = "incident-pilot.probe"  # probe_write's row, never committed
PROBE_BYTES = 64 * 1024
ID_RANGE = range(-(2**63), 2**63)  # SQL's 64-bit integer ids

_CTX_SELECT = {
    kind: f"SELECT id, service, ts, {', '.join(codec.column_names(kind))}, attributes FROM {kind}"
    for kind in CONTEXT_KINDS
}


def context_query_sql(kind: str, *, with_service: bool) -> str:
    """The SELECT query_context runs (tests ask each engine for its plan). Newest first is
    the backward order of the (service, ts[, id]) / (ts[, id]) indexes: no sort step."""
    where = "service = ? AND ts >= ? AND ts <= ?" if with_service else "ts >= ? AND ts <= ?"
    return f"{_CTX_SELECT[kind]} WHERE {where} ORDER BY ts DESC, id DESC LIMIT ?"


def _record(kind: str, row: Sequence[Any]) -> ContextRecord:
    fields = codec.join_fields(kind, tuple(row[3:-1]), row[-1])
    return ContextRecord(kind, str(row[0]), row[1], from_epoch(row[2]), fields)


class SQLStore:
    """`Store` over `dialect`; opening it applies the missing migrations."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.single_writer = dialect.single_writer
        try:
            if "0010_incident_terms" in apply_migrations(dialect):
                dialect.write(search.index_unsearched)
        except BaseException:
            dialect.close()
            raise

    def close(self) -> None:
        self.dialect.close()

    def __enter__(self) -> SQLStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset_for_tests(self) -> None:
        """Empty every table and restart the ids (tests only)."""
        self.dialect.reset(
            [*CONTEXT_KINDS, "pulls", "deliveries", "alerts", "incident_terms", "incidents"]
        )
        self.dialect.write(lambda conn: conn.execute("UPDATE tallies SET n = 0"))

    # --- context -------------------------------------------------------------------
    def add_context(self, records: Sequence[NewContext]) -> list[ContextRecord]:
        ids = self._insert_context(records)
        return [
            ContextRecord(rec.kind, str(ids[i]), rec.service, codec.aware(rec.ts), dict(rec.fields))
            for i, rec in enumerate(records)
        ]

    def append_context(self, records: Sequence[NewContext]) -> int:
        """add_context for callers that answer without ids (the OTLP and Loki receivers):
        the same rows in the same transaction, without building the stored records."""
        self._insert_context(records)
        return len(records)

    def _insert_context(self, records: Sequence[NewContext]) -> list[int]:
        # Benchmarked against raw executemany: rows are built in one lean pass before the
        # transaction starts, so it holds only the inserts.
        rows: dict[str, list[list[Any]]] = {kind: [] for kind in CONTEXT_KINDS}
        order: dict[str, list[int]] = {kind: [] for kind in CONTEXT_KINDS}
        split = codec.Splitter()
        for i, rec in enumerate(records):
            kind_rows = rows.get(rec.kind)
            if kind_rows is None:
                codec.check_kind(rec.kind)  # raises ValueError with the list of kinds
            assert kind_rows is not None
            columns, attributes = split(rec.kind, rec.fields)
            kind_rows.append([rec.service, epoch(rec.ts), *columns, attributes])
            order[rec.kind].append(i)
        ids: list[int] = [0] * len(records)

        def work(conn: Conn) -> None:
            for kind, kind_rows in rows.items():
                if kind_rows:
                    tallies.add(conn, self.dialect.name, f"context.{kind}", len(kind_rows))
                    new_ids = self.dialect.insert_context(conn, kind, kind_rows)
                    for rid, i in zip(new_ids, order[kind], strict=True):
                        ids[i] = rid

        if records:
            self.dialect.write(work)
        return ids

    def query_context(
        self,
        kind: str,
        *,
        start: datetime,
        end: datetime,
        service: str | None = None,
        limit: int | None = None,
    ) -> list[ContextRecord]:
        codec.check_kind(kind)
        args: list[Any] = [service] if service is not None else []
        args += [epoch(start), epoch(end), self.dialect.unlimited if limit is None else limit]
        sql = context_query_sql(kind, with_service=service is not None)
        with self.dialect.read() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [_record(kind, row) for row in rows]

    def context_column(
        self,
        kind: str,
        column: str,
        *,
        start: datetime,
        end: datetime,
        service: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[float, str, Any]]:
        """(epoch ts, id, value) of the records in the window, newest first: one typed
        column only, for summaries over many records (the incident page's timeline)."""
        codec.check_kind(kind)
        if column not in {name for name, _ in codec.TYPED_FIELDS[kind]}:
            raise ValueError(f"{kind} has no column {column!r}")
        where = (
            "service = ? AND ts >= ? AND ts <= ?" if service is not None else "ts >= ? AND ts <= ?"
        )
        args: list[Any] = [service] if service is not None else []
        args += [epoch(start), epoch(end), self.dialect.unlimited if limit is None else limit]
        sql = (
            f'SELECT ts, id, "{column}" FROM {kind} WHERE {where} ORDER BY ts DESC, id DESC LIMIT ?'
        )
        with self.dialect.read() as conn:
            return [(ts, str(rid), value) for ts, rid, value in conn.execute(sql, args)]

    def get_context(self, kind: str, record_id: str) -> ContextRecord | None:
        codec.check_kind(kind)
        try:
            rid = int(record_id)
        except (TypeError, ValueError):
            return None
        if rid not in ID_RANGE:
            return None  # no such id can exist
        with self.dialect.read() as conn:
            row = conn.execute(f"{_CTX_SELECT[kind]} WHERE id = ?", (rid,)).fetchone()
        return None if row is None else _record(kind, row)

    def prune_context(self, before: datetime) -> int:
        """Delete context records older than `before`, and stored pull answers, in small
        paced chunks (engine.store.retention). Rows another replica's pruner is deleting
        right now are skipped (where the engine has row locks), so two pruners share the
        work; the count is this call's context records."""
        removed = retention.prune_context(self.dialect, epoch(before))
        retention.prune_pulls(self.dialect, epoch(before))
        return removed

    def prune_incidents(self, before: datetime) -> dict[str, int]:
        """Delete resolved incidents resolved before `before` (with their alerts and
        outbox rows; never one with a delivery still pending), and delivered outbox rows
        delivered before it. The counts deleted, by what."""
        cutoff = epoch(before)
        return {
            "incidents": retention.prune_resolved(self.dialect, cutoff),
            "deliveries": retention.prune_delivered(self.dialect, cutoff),
        }

    def context_counts(self) -> dict[str, int]:
        return self.stats()["context"]

    def oldest_context_ts(self) -> datetime | None:
        sql = " UNION ALL ".join(f"SELECT MIN(ts) FROM {k}" for k in CONTEXT_KINDS)
        with self.dialect.read() as conn:
            oldest = [row[0] for row in conn.execute(sql)]
        present = [ts for ts in oldest if ts is not None]
        return from_epoch(min(present)) if present else None

    # --- alerts and incidents ----------------------------------------------------
    def _plan(
        self, conn: Conn, plan: PlanDeliveries | None, outcome: AlertOutcome, now: datetime
    ) -> None:
        """Run `plan` inside the caller's write transaction and store its deliveries, so
        they commit (or roll back) together with the change that caused them. `plan` may
        read the store (it sees the change) but must not write to it; it runs again when
        the transaction is retried, and only the last run's deliveries are stored."""
        deliveries = planned(plan, outcome)
        if deliveries:
            assert outcome.incident is not None  # planned() refuses deliveries without one
            outbox.insert(self.dialect, conn, outcome.incident.id, deliveries, epoch(now))

    def get_incident(self, incident_id: str) -> Incident | None:
        with self.dialect.read() as conn:
            return incidents.get(conn, incident_id)

    def find_repeat(self, fingerprint: str, starts_at: datetime) -> Incident | None:
        with self.dialect.read() as conn:
            return incidents.find_repeat(conn, fingerprint, starts_at)

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
        severities: Sequence[Severity] = (),
        q: str | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[Incident]:
        """Newest first by opened_at; `since` filters opened_at >= since; limit None: all;
        `any_of`: at least one of its column = value maps holds (Store.list_incidents)."""
        filters = {"status": status, "service": service, "team": team, "fingerprint": fingerprint}
        limit = self.dialect.unlimited if limit is None or limit < 0 else limit
        q_words = search.query_words(q or "")
        with self.dialect.read() as conn:
            return incidents.select(
                conn,
                filters,
                since,
                limit,
                any_of,
                severities=severities,
                q_words=q_words,
                before=before,
            )

    def incident_alerts(self, incident_id: str) -> list[AlertRecord]:
        with self.dialect.read() as conn:
            return incidents.alerts_of(conn, incident_id)

    def record_firing(
        self,
        draft: IncidentDraft,
        *,
        now: datetime,
        renotify_after: timedelta,
        plan: PlanDeliveries | None = None,
    ) -> AlertOutcome:
        """Repeat, else attach, else open (see `Store.record_firing`), in one transaction;
        safe across processes (engine.store.incidents)."""

        def work(conn: Conn) -> AlertOutcome:
            outcome = firing.record_firing(self.dialect, conn, draft, now, renotify_after)
            self._plan(conn, plan, outcome, now)
            for merged, sinks in outcome.merged:  # resolve the pages a merged incident sent
                resolves = [d for d in planned(plan, merged) if d.sink in sinks]
                if resolves and merged.incident is not None:
                    outbox.insert(self.dialect, conn, merged.incident.id, resolves, epoch(now))
            return outcome

        return self.dialect.write(work)

    def record_resolved(
        self, alert: Alert, *, now: datetime, plan: PlanDeliveries | None = None
    ) -> AlertOutcome:
        """Mark the alert resolved; resolve its incident when nothing of it still fires
        (the rules: engine.store.incidents.record_resolved). When the rows belong to
        several incidents, each is settled and `plan` runs once per incident; the outcome
        returned is that of the newest row's incident."""

        def work(conn: Conn) -> AlertOutcome:
            outcomes = incidents.record_resolved(self.dialect, conn, alert, now)
            for outcome in outcomes:
                self._plan(conn, plan, outcome, now)
            return outcomes[0]

        return self.dialect.write(work)

    def resolve_incident(
        self,
        incident_id: str,
        *,
        at: datetime,
        note: str | None = None,
        auto: bool = False,
        plan: PlanDeliveries | None = None,
    ) -> AlertOutcome:
        """Resolve now; its still-firing alerts are marked resolved at `at` too, so a later
        Alertmanager resolution for them is `ignored`."""

        def work(conn: Conn) -> AlertOutcome:
            outcome = incidents.resolve(self.dialect, conn, incident_id, at, note, auto)
            self._plan(conn, plan, outcome, at)
            return outcome

        return self.dialect.write(work)

    def set_narration(self, incident_id: str, narration: dict[str, Any]) -> None:
        """Replace the narration. Raises KeyError for an unknown incident."""
        found = self.dialect.write(
            lambda conn: incidents.set_narration(conn, incident_id, narration)
        )
        if not found:
            raise KeyError(incident_id)

    def add_findings(
        self, incident_id: str, findings: Sequence[Finding], *, now: datetime
    ) -> Incident | None:
        """Append findings (a pull rule's, after the incident was stored) and release the
        incident's held first deliveries, in one transaction; None for an unknown one."""

        def work(conn: Conn) -> Incident | None:
            incident = incidents.add_findings(self.dialect, conn, incident_id, findings)
            if incident is not None:
                # Not before a cascade's hold-down (engine.store.cascade) is over.
                row = conn.execute("SELECT held_until FROM incidents WHERE id = ?", (incident_id,))
                held_until = row.fetchone()[0]
                outbox.release_held(conn, incident_id, max(epoch(now), held_until or 0.0))
            return incident

        return self.dialect.write(work)

    def add_pull(self, pull: NewPull, *, now: datetime) -> Pull:
        return self.dialect.write(lambda conn: pulls.insert(conn, pull, now))

    def get_pull(self, pull_id: str) -> Pull | None:
        with self.dialect.read() as conn:
            return pulls.get(conn, pull_id)

    def stats(self) -> dict[str, Any]:
        """From the kept counts (engine.store.tallies): one small query at any size."""
        with self.dialect.read() as conn:
            return tallies.as_stats(tallies.read(conn))

    def probe_write(self) -> None:
        # A 64 KB log row, incompressible, inserted and deleted in one transaction: it
        # goes through the journal and the commit like an alert's write (a single small
        # row can still fit on a nearly full disk where alerts fail), and leaves nothing.
        def work(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO logs (service, ts, level, message) VALUES (?, 0, 'DEBUG', ?)",
                (PROBE_SERVICE, secrets.token_hex(PROBE_BYTES // 2)),
            )
            conn.execute("DELETE FROM logs WHERE service = ?", (PROBE_SERVICE,))

        self.dialect.write(work)

    # --- delivery outbox ---------------------------------------------------------
    def claim_deliveries(
        self, *, now: datetime, limit: int, lease: timedelta, worker: str
    ) -> list[Delivery]:
        """Claim the due head of each (incident, sink) queue (see `Store.claim_deliveries`):
        each delivery goes to one worker of one process until its lease expires. Dead
        ones are skipped, so a message that exhausted its retries does not block the
        incident's later ones (they still go out in order)."""
        return self.dialect.write(
            lambda conn: outbox.claim(self.dialect, conn, now, limit, lease, worker)
        )

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        ok: bool,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """ok -> delivered; else pending again at retry_at, or dead without one. A delivery
        already delivered or dead stays so (a late finish from a worker whose lease
        expired must not resurrect it). Raises KeyError for an unknown id."""
        self.dialect.write(
            lambda conn: outbox.finish(self.dialect, conn, delivery_id, ok, now, error, retry_at)
        )

    def dead_deliveries(self, limit: int = 50) -> list[Delivery]:
        """Dead letters, newest first."""
        with self.dialect.read() as conn:
            return outbox.dead(conn, limit)

    def list_deliveries(
        self,
        *,
        statuses: Sequence[str],
        incident: str | None = None,
        sink: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        with self.dialect.read() as conn:
            return outbox.select(conn, statuses, incident, sink, before, limit)

    def get_delivery(self, delivery_id: int) -> Delivery | None:
        with self.dialect.read() as conn:
            return outbox.get(conn, delivery_id)

    def retry_delivery(self, delivery_id: int, *, now: datetime) -> Delivery | None:
        return self.dialect.write(
            lambda conn: outbox.resend(self.dialect, conn, delivery_id, epoch(now))
        )

    def oldest_pending_delivery(self) -> datetime | None:
        with self.dialect.read() as conn:
            oldest = outbox.oldest_pending(conn)
        return None if oldest is None else from_epoch(oldest)
