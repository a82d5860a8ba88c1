"""The store interface: context records, alerts, incidents and the delivery outbox.

Every backend (SQLite, PostgreSQL) implements `Store`; one contract test suite
(`tests/store/test_contract.py`) runs against each. Methods are synchronous and
may block on disk or network: the server calls them from worker threads, never
on the event loop. Every write method commits before it returns, so a caller
may acknowledge as soon as it gets an answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from engine.model import Alert, ContextRecord, Finding, Incident, Severity


@dataclass(frozen=True)
class NewContext:
    """A context record before it is stored (the store assigns its id)."""

    kind: str
    service: str
    ts: datetime
    fields: dict[str, Any]


def new_context(kind: str, service: str, ts: datetime, fields: dict[str, Any]) -> NewContext:
    """NewContext(kind, service, ts, fields) without the frozen dataclass's four
    object.__setattr__ calls (half the cost of building one): the instance is the same.
    For the ingest paths that build thousands per request (benchmarked in `bench/`)."""
    record = object.__new__(NewContext)
    object.__setattr__(
        record, "__dict__", {"kind": kind, "service": service, "ts": ts, "fields": fields}
    )
    return record


@dataclass(frozen=True)
class Cascade:
    """Where this alert sits in a dependency cascade (engine.rules.grouping), decided
    again inside the transaction that records it (engine.store.cascade):

    - `upstream`: {service: U} maps; an open incident of one of them, opened between
      `since` and `until`, takes this alert as a symptom instead of it paging;
    - `downstream`: {service: D} maps; when this alert opens an incident, the open
      incidents of those services opened at or after `merge_since` are merged into it
      (their alerts become its symptoms, their pages are withdrawn or resolved);
    - `hold`: seconds a new incident's first page waits for an upstream incident to
      open (the rule's `window.after`), when there is an upstream to wait for;
    - `via`: service -> the table entry paths that link it to this alert's service.
    """

    rule: str
    upstream: tuple[dict[str, str], ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    downstream: tuple[dict[str, str], ...] = ()
    merge_since: datetime | None = None
    hold: float = 0.0
    via: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The advisory lock keys: each upstream service, and this alert's own service when it
    # has dependents (so an upstream and a dependent always share one key).
    locks: tuple[str, ...] = ()


@dataclass(frozen=True)
class IncidentDraft:
    """What the rules concluded about a firing alert, before the store decides its fate."""

    id: str  # the id the incident gets if it is opened
    alert: Alert
    title: str
    team: str | None
    severity: Severity
    findings: tuple[Finding, ...]
    duplicate_of: str | None = None  # an open incident the rules say this alert belongs to
    # Column = value maps (ANY_OF_COLUMNS) of an open incident in this alert's duplicate
    # group (engine.rules.grouping): re-checked inside the transaction that would open one.
    groups: tuple[dict[str, str], ...] = ()
    narration: dict[str, Any] | None = None
    symptom_of: str | None = None  # an open upstream incident the rules name (symptom_of)
    cascade: Cascade | None = None


# The columns `Store.list_incidents(any_of=...)` may compare.
ANY_OF_COLUMNS = frozenset({"fingerprint", "service", "alertname", "team"})

OutcomeKind = Literal["opened", "attached", "repeat", "resolved", "ignored"]


@dataclass(frozen=True)
class AlertOutcome:
    """What recording an alert did.

    - opened: a new incident.
    - attached: a new firing joined an open incident (duplicate or same fingerprint).
    - repeat: the same firing (fingerprint + startsAt) was seen before.
    - resolved: the alert's resolution closed its incident (or one of its alerts).
    - ignored: a resolution for an alert we never saw firing, or whose incident is closed.
    `notify` says whether sinks should hear of it now (re-notify interval applied).
    """

    kind: OutcomeKind
    incident: Incident | None
    notify: bool
    # Incidents merged into this one as it opened (a dependency cascade): each resolved
    # outcome, with the sinks whose page for it was already on its way (to be resolved).
    merged: tuple[tuple[AlertOutcome, frozenset[str]], ...] = ()


@dataclass(frozen=True)
class AlertRecord:
    """One alert recorded for an incident (`Store.incident_alerts`): the first one, or one
    that joined it."""

    fingerprint: str
    starts_at: datetime
    status: str  # "firing" | "resolved"
    ends_at: datetime | None
    labels: dict[str, str] | None  # None: recorded before alerts kept their labels
    generator_url: str = ""


@dataclass(frozen=True)
class NewDelivery:
    """One message for one sink, stored in the outbox before it is attempted."""

    sink: str  # the sink's configured name
    event: str  # "trigger" | "update" | "resolve"
    payload: dict[str, Any] = field(default_factory=dict)
    # Seconds after the change its first attempt is due: a first delivery held while the
    # incident's pull rules run (engine.pull); `add_findings` releases it early.
    delay: float = 0.0


@dataclass(frozen=True)
class NewPull:
    """One answer of a pull source (prometheus, loki), before it is stored."""

    source: str
    url: str  # the API endpoint asked (no credentials)
    query: str
    start: datetime
    end: datetime
    step: float | None  # seconds; None for an instant query
    link: str | None  # the query in the source's UI (Prometheus graph), when known
    answer: dict[str, Any]  # an excerpt: resultType, the series / streams (bounded)


@dataclass(frozen=True)
class Pull(NewPull):
    id: str = ""
    created_at: datetime | None = None

    @property
    def path(self) -> str:
        return f"pulls/{self.id}"


@dataclass(frozen=True)
class Delivery:
    id: int
    incident_id: str
    sink: str
    event: str
    payload: dict[str, Any]
    attempts: int
    status: str  # "pending" | "sending" | "delivered" | "dead"
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime


class RetryRefused(Exception):
    """A delivery that may not be re-sent: not dead, or a page for a resolved incident."""


# Called inside the transaction that opens / attaches / resolves an incident, so
# deliveries are stored atomically with the change that causes them.
PlanDeliveries = Callable[[AlertOutcome], Sequence[NewDelivery]]


def planned(plan: PlanDeliveries | None, outcome: AlertOutcome) -> list[NewDelivery]:
    """The deliveries `plan` wants for `outcome` (every backend calls this inside the
    transaction that made the outcome). Deliveries need an incident to belong to."""
    if plan is None:
        return []
    deliveries = list(plan(outcome))
    if deliveries and outcome.incident is None:
        raise ValueError(
            f"plan() returned deliveries for a {outcome.kind!r} outcome with no incident"
        )
    return deliveries


class Store(Protocol):
    # True when one connection makes every write (SQLite): the server then hands context
    # writes to one dedicated thread rather than the worker pool.
    single_writer: bool

    # --- context -----------------------------------------------------------
    def add_context(self, records: Sequence[NewContext]) -> list[ContextRecord]:
        """Store records (any mix of kinds) in one transaction; return them with ids."""
        ...

    def append_context(self, records: Sequence[NewContext]) -> int:
        """add_context without the answer: store records in one transaction, return how many."""
        ...

    def query_context(
        self,
        kind: str,
        *,
        start: datetime,
        end: datetime,
        service: str | None = None,
        limit: int | None = None,
    ) -> list[ContextRecord]:
        """Records of `kind` with start <= ts <= end (and service, when given), newest first.

        Must use an index on (service, ts) / (ts): never a scan of the whole table.
        """
        ...

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
        """(epoch seconds, id, value of `column`) of the records query_context would return,
        newest first, reading one of the kind's typed columns (codec.TYPED_FIELDS) only:
        for summaries over many records. Other columns are a ValueError."""
        ...

    def get_context(self, kind: str, record_id: str) -> ContextRecord | None: ...

    def prune_context(self, before: datetime) -> int:
        """Delete context records (and stored pull answers) older than `before`; return
        how many context records."""
        ...

    def prune_incidents(self, before: datetime) -> dict[str, int]:
        """Delete resolved incidents resolved before `before`, with their alerts and outbox
        rows (never one with a delivery pending), and delivered outbox rows delivered
        before it; return the counts by "incidents" and "deliveries"."""
        ...

    def context_counts(self) -> dict[str, int]: ...

    def oldest_context_ts(self) -> datetime | None: ...

    # --- alerts and incidents ---------------------------------------------
    def find_repeat(self, fingerprint: str, starts_at: datetime) -> Incident | None:
        """The incident an identical firing (same fingerprint and startsAt) already made."""
        ...

    def record_firing(
        self,
        draft: IncidentDraft,
        *,
        now: datetime,
        renotify_after: timedelta,
        plan: PlanDeliveries | None = None,
    ) -> AlertOutcome:
        """Atomically: repeat, else attach (draft.duplicate_of, or the open incident with the
        same fingerprint), else open a new incident from the draft. At most one incident is
        ever open per fingerprint, even under concurrent calls from several processes."""
        ...

    def record_resolved(
        self, alert: Alert, *, now: datetime, plan: PlanDeliveries | None = None
    ) -> AlertOutcome:
        """Mark the alert resolved (at alert.ends_at); when every alert attached to its
        incident is resolved, resolve the incident automatically."""
        ...

    def get_incident(self, incident_id: str) -> Incident | None: ...

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
        """Newest first by opened_at (filters are ANDed; None means any); `since` is
        inclusive; `limit` None means all. `any_of`, when not empty: only the incidents
        matching at least one of its maps, each an AND of column = value over the columns
        in ANY_OF_COLUMNS (any other column, or an empty map, is a ValueError).
        `severities`: any of them (empty: any). `q`: a text search, each of its words the
        start of a word of the incident's id, title, team or alert label values
        (engine.store.search). `before`: a cursor, the (opened_at, id) of the last incident
        of the previous page; only those after it in this order."""
        ...

    def incident_alerts(self, incident_id: str) -> list[AlertRecord]:
        """Each alert recorded for the incident (the first one and those attached to it),
        oldest first."""
        ...

    def resolve_incident(
        self,
        incident_id: str,
        *,
        at: datetime,
        note: str | None = None,
        auto: bool = False,
        plan: PlanDeliveries | None = None,
    ) -> AlertOutcome:
        """Resolve by hand (or automatically). kind is "resolved", or "ignored" when it was
        already resolved; incident is None when there is no such incident."""
        ...

    def set_narration(self, incident_id: str, narration: dict[str, Any]) -> None: ...

    def add_findings(
        self, incident_id: str, findings: Sequence[Finding], *, now: datetime
    ) -> Incident | None:
        """Append findings to an incident (its pull rules' findings, after it was stored),
        and release its held first deliveries (due now). None for an unknown incident."""
        ...

    # --- pull answers (evidence pulls/<id>) ------------------------------------
    def add_pull(self, pull: NewPull, *, now: datetime) -> Pull: ...

    def get_pull(self, pull_id: str) -> Pull | None: ...

    def stats(self) -> dict[str, Any]:
        """Counters for /api/stats: alerts by status, incidents by status, context by kind,
        outbox by status."""
        ...

    def probe_write(self) -> None:
        """Commit a write that changes nothing anyone reads (readiness). Raises
        engine.store.errors.StoreUnavailable when the store cannot commit."""
        ...

    # --- delivery outbox ---------------------------------------------------
    def claim_deliveries(
        self, *, now: datetime, limit: int, lease: timedelta, worker: str
    ) -> list[Delivery]:
        """Claim due deliveries (pending, or sending with an expired lease), the oldest
        undelivered one of each (incident, sink) only, so the messages one sink gets about
        one incident keep their order, and a failing sink does not hold back the others.
        A claimed delivery is invisible to other workers until the lease expires."""
        ...

    def finish_delivery(
        self,
        delivery_id: int,
        *,
        ok: bool,
        now: datetime,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """ok -> delivered. Not ok -> pending again at retry_at, or dead when retry_at is None."""
        ...

    def dead_deliveries(self, limit: int = 50) -> list[Delivery]: ...

    def list_deliveries(
        self,
        *,
        statuses: Sequence[str],
        incident: str | None = None,
        sink: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """Deliveries in `statuses` (of one incident / sink when given, ids below
        `before` when given), newest first."""
        ...

    def get_delivery(self, delivery_id: int) -> Delivery | None: ...

    def retry_delivery(self, delivery_id: int, *, now: datetime) -> Delivery | None:
        """Queue a dead delivery again, due `now`, with a fresh retry window. None for an
        unknown id; RetryRefused when it is not dead, or is a trigger / update whose
        incident has since resolved."""
        ...

    def oldest_pending_delivery(self) -> datetime | None:
        """When the oldest delivery still pending or sending was created."""
        ...

    def close(self) -> None: ...
