"""Kept counts: what /metrics and /api/stats report, without counting rows.

`tallies` holds, per name, the number of incidents, alerts and deliveries in each status
(plus the incidents' repeat and attachment sums) and of context records of each kind.
Triggers keep the first three exact in the same transaction as every insert, status
change and delete, whichever code makes it; the store adds context batches itself (one
statement per batch, where a trigger would cost one per row). Reading them is one small
GROUP BY, however large the tables are.

Each name has SHARDS rows on PostgreSQL, a transaction updating the shard of its backend
(`mod(pg_backend_pid(), SHARDS)`): concurrent transactions rarely touch the same row, so the
counts never serialise writers the way one hot row per name would. SQLite has one writer
at a time and one row per name. The sum of a name's rows is its count.
"""

from __future__ import annotations

from typing import Any

from engine.model import CONTEXT_KINDS
from engine.store.dialect import Conn

INCIDENT_STATUSES = ("open", "resolved")
ALERT_STATUSES = ("firing", "resolved")
DELIVERY_STATUSES = ("pending", "sending", "delivered", "dead")
NAMES: tuple[str, ...] = (
    *(f"incidents.{s}" for s in INCIDENT_STATUSES),
    "incidents.repeats",
    "incidents.attached",
    *(f"alerts.{s}" for s in ALERT_STATUSES),
    *(f"deliveries.{s}" for s in DELIVERY_STATUSES),
    *(f"context.{k}" for k in CONTEXT_KINDS),
)
SHARDS = {"sqlite": 1, "postgresql": 32}
SHARD_EXPR = {"sqlite": "0", "postgresql": f"mod(pg_backend_pid(), {SHARDS['postgresql']})"}

# Per table: (tally name expression, value expression, column it comes from), with R for
# the row (NEW or OLD). A row contributes `value` to `name`.
_CONTRIBUTIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "incidents": (
        ("'incidents.' || R.status", "1", "status"),
        ("'incidents.repeats'", "R.repeat_count", "repeat_count"),
        ("'incidents.attached'", "R.attached_count", "attached_count"),
    ),
    "alerts": (("'alerts.' || R.status", "1", "status"),),
    "deliveries": (("'deliveries.' || R.status", "1", "status"),),
}
_SEED_COUNTS = {
    **{f"incidents.{s}": f"SELECT COUNT(*) FROM incidents WHERE status = '{s}'" for s in INCIDENT_STATUSES},
    "incidents.repeats": "SELECT COALESCE(SUM(repeat_count), 0) FROM incidents",
    "incidents.attached": "SELECT COALESCE(SUM(attached_count), 0) FROM incidents",
    **{f"alerts.{s}": f"SELECT COUNT(*) FROM alerts WHERE status = '{s}'" for s in ALERT_STATUSES},
    **{f"deliveries.{s}": f"SELECT COUNT(*) FROM deliveries WHERE status = '{s}'" for s in DELIVERY_STATUSES},
    **{f"context.{k}": f"SELECT COUNT(*) FROM {k}" for k in CONTEXT_KINDS},
}  # fmt: skip


def add(conn: Conn, engine: str, name: str, delta: int) -> None:
    """Add `delta` to tally `name` inside the caller's transaction."""
    if delta:
        conn.execute(
            f"UPDATE tallies SET n = n + ? WHERE name = ? AND shard = {SHARD_EXPR[engine]}",
            (delta, name),
        )


def read(conn: Conn) -> dict[str, int]:
    """Every tally by name (names without a row read as 0)."""
    got = {
        name: int(n) for name, n in conn.execute("SELECT name, SUM(n) FROM tallies GROUP BY name")
    }
    return {name: got.get(name, 0) for name in NAMES}


def as_stats(t: dict[str, int]) -> dict[str, Any]:
    """The store's stats() from the tallies: alerts, incidents, context, outbox."""
    firing, resolved = t["alerts.firing"], t["alerts.resolved"]
    opened, closed = t["incidents.open"], t["incidents.resolved"]
    return {
        "alerts": {"firing": firing, "resolved": resolved, "total": firing + resolved},
        "incidents": {
            "open": opened,
            "resolved": closed,
            "total": opened + closed,
            "repeats": t["incidents.repeats"],
            "attached": t["incidents.attached"],
        },
        "context": {k: t[f"context.{k}"] for k in CONTEXT_KINDS},
        "outbox": {s: t[f"deliveries.{s}"] for s in DELIVERY_STATUSES},
    }


def migration_ddl(engine: str) -> str:
    """The DDL of the tallies migration for `engine`: the table, its rows seeded with the
    counts of the tables as they are, and the triggers that keep them."""
    shard = SHARD_EXPR[engine]
    out = [
        "CREATE TABLE tallies (name TEXT NOT NULL, shard INTEGER NOT NULL, n BIGINT NOT NULL);",
        "CREATE UNIQUE INDEX tallies_name_shard ON tallies (name, shard);",
    ]
    for name in NAMES:
        for s in range(SHARDS[engine]):
            seed = f"({_SEED_COUNTS[name]})" if s == 0 else "0"
            out.append(f"INSERT INTO tallies (name, shard, n) VALUES ('{name}', {s}, {seed});")
    for table, parts in _CONTRIBUTIONS.items():
        columns = [column for _, _, column in parts]
        changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)
        if engine == "postgresql":
            changed = changed.replace(" IS NOT ", " IS DISTINCT FROM ")
        steps = {
            "INSERT": _updates(parts, "NEW", "+", shard),
            "DELETE": _updates(parts, "OLD", "-", shard),
            "UPDATE": _updates(parts, "OLD", "-", shard) + _updates(parts, "NEW", "+", shard),
        }
        for op, body in steps.items():
            when = f" WHEN ({changed})" if op == "UPDATE" else ""
            trigger = f"{table}_tally_{op.lower()}"
            if engine == "sqlite":
                out.append(
                    f"CREATE TRIGGER {trigger} AFTER {op} ON {table} FOR EACH ROW{when}"
                    f" BEGIN {' '.join(body)} END;"
                )
            else:
                out.append(
                    f"CREATE FUNCTION {trigger}() RETURNS trigger LANGUAGE plpgsql AS $$"
                    f" BEGIN {' '.join(body)} RETURN NULL; END $$;"
                )
                out.append(
                    f"CREATE TRIGGER {trigger} AFTER {op} ON {table} FOR EACH ROW{when}"
                    f" EXECUTE FUNCTION {trigger}();"
                )
    return "\n".join(out) + "\n"


def _updates(parts: tuple[tuple[str, str, str], ...], row: str, sign: str, shard: str) -> list[str]:
    out = []
    for name, value, _ in parts:
        name, value = name.replace("R.", f"{row}."), value.replace("R.", f"{row}.")
        skip_zero = "" if value == "1" else f" AND {value} <> 0"
        out.append(
            f"UPDATE tallies SET n = n {sign} {value} WHERE name = {name} AND shard = {shard}"
            f"{skip_zero};"
        )
    return out
