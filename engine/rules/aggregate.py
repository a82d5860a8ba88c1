"""Aggregations over the matched records of a rule (count, latest, percentile, patterns...)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from engine.rules.conditions import MISSING, lookup, split_path, to_number
from engine.rules.patterns import cluster

Record = dict[str, Any]
Aggregator = Callable[[Sequence[Record]], Any]

# Aggregations whose value is a record, or records, so evidence may cite them.
RECORD_AGGREGATIONS = {"first", "latest", "earliest", "top", "pattern_of", "dominant"}
# Aggregations whose value is a list (compare its size, not the list, with a number).
LIST_AGGREGATIONS = {"distinct", "top"}


def _values(records: Sequence[Record], path: tuple[str, ...]) -> list[Any]:
    out = []
    for r in records:
        v = lookup(r, path)
        if v is not MISSING and v is not None:
            out.append(v)
    return out


def _numbers(records: Sequence[Record], path: tuple[str, ...]) -> list[float]:
    return [n for n in (to_number(v) for v in _values(records, path)) if n is not None]


def nearest_rank(p: float, n: int) -> int:
    """The 1-based rank of the nearest-rank p-th percentile of n values: ceil(p/100 * n),
    computed exactly. `p` is taken as written (99.9 is 999/10, not the binary float just
    below it), and the product is a fraction, so p = 7 of 100 values is rank 7, not the
    8 that `math.ceil(7 / 100 * 100)` gives (7 / 100 * 100 is 7.000000000000001)."""
    exact = Fraction(repr(float(p))) * n / 100
    return min(n, max(1, -(-exact.numerator // exact.denominator)))


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[nearest_rank(p, len(ordered)) - 1]


def _tidy(n: float | None) -> float | int | None:
    if n is None:
        return None
    return int(n) if float(n).is_integer() else round(n, 3)


def kind_of(spec: Any) -> str:
    return spec if isinstance(spec, str) else next(iter(spec))


def make_aggregator(spec: Any) -> Aggregator:
    """Turn one schema-valid `aggregate:` entry into a function of the matched records."""
    kind = kind_of(spec)
    if kind == "count":
        return len
    if kind == "first":
        return lambda rs: rs[0] if rs else None
    if kind in ("latest", "earliest"):
        pick = max if kind == "latest" else min
        return lambda rs: pick(rs, key=lambda r: r["_epoch"]) if rs else None
    arg = spec[kind]
    if kind == "distinct":
        path = split_path(arg)
        return lambda rs: sorted({str(v) for v in _values(rs, path)})
    if kind == "count_distinct":
        path = split_path(arg)
        return lambda rs: len({str(v) for v in _values(rs, path)})
    if kind == "dominant":
        return _dominant(arg)
    if kind == "percentile":
        path, p = split_path(arg["field"]), float(arg["p"])
        return lambda rs: _tidy(percentile(_numbers(rs, path), p))
    if kind in ("max", "min", "sum", "avg"):
        path = split_path(arg)
        reducers: dict[str, Callable[[list[float]], float]] = {
            "max": max,
            "min": min,
            "sum": sum,
            "avg": lambda xs: sum(xs) / len(xs),
        }
        reduce_ = reducers[kind]

        def numeric(rs: Sequence[Record]) -> Any:
            xs = _numbers(rs, path)
            if not xs:
                return 0 if kind == "sum" else None
            return _tidy(reduce_(xs))

        return numeric
    if kind == "pattern_of":
        field, samples = (arg, 5) if isinstance(arg, str) else (arg["field"], arg.get("samples", 5))
        path = split_path(field)

        def patterns(rs: Sequence[Record]) -> dict[str, Any]:
            with_text = [r for r in rs if lookup(r, path) not in (MISSING, None)]
            groups = cluster(with_text, [str(lookup(r, path)) for r in with_text], samples)
            if not groups:
                return {"pattern": "", "count": 0, "share": 0.0, "samples": [], "patterns": []}
            top = groups[0].as_scope()
            top["patterns"] = [
                {"pattern": g.pattern, "count": g.count, "share": g.share} for g in groups[:10]
            ]
            return top

        return patterns
    if kind == "top":
        path, n = split_path(arg["by"]), int(arg.get("n", 5))
        descending = arg.get("order", "desc") == "desc"

        def top(rs: Sequence[Record]) -> list[Record]:
            keyed = [(to_number(lookup(r, path)), r) for r in rs]
            keyed = [(k, r) for k, r in keyed if k is not None]
            keyed.sort(key=lambda kr: kr[0], reverse=descending)  # type: ignore[arg-type,return-value]
            return [r for _, r in keyed[:n]]

        return top
    raise ValueError(f"unknown aggregation {kind!r}")


def _dominant(arg: Any) -> Aggregator:
    """The most frequent value of a field (ties: the value seen first), its count and share
    of the records that have the field, sample records carrying it, and the top 10 values."""
    field, samples = (arg, 5) if isinstance(arg, str) else (arg["field"], arg.get("samples", 5))
    path = split_path(field)

    def dominant(rs: Sequence[Record]) -> dict[str, Any]:
        by_value: dict[str, list[Record]] = {}
        for r in rs:
            v = lookup(r, path)
            if v is not MISSING and v is not None:
                by_value.setdefault(str(v), []).append(r)
        if not by_value:
            return {"value": None, "count": 0, "share": 0.0, "samples": [], "values": []}
        total = sum(len(group) for group in by_value.values())
        ranked = sorted(by_value.items(), key=lambda kv: -len(kv[1]))  # stable: first seen
        value, group = ranked[0]
        return {
            "value": value,
            "count": len(group),
            "share": round(len(group) / total, 3),
            "samples": group[:samples],
            "values": [
                {"value": v, "count": len(g), "share": round(len(g) / total, 3)}
                for v, g in ranked[:10]
            ],
        }

    return dominant
