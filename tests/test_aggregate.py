"""Aggregations over matched records: what each kind yields, with and without records."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from engine.rules.aggregate import (  # noqa: E402
    RECORD_AGGREGATIONS,
    kind_of,
    make_aggregator,
    percentile,
)


def rec(i: int, epoch: float, **fields: Any) -> dict[str, Any]:
    return {"id": str(i), "path": f"context/traces/{i}", "_epoch": epoch, **fields}


# Source order (newest first, as the store returns them) is not time order on purpose.
RECORDS = [
    rec(1, 1000.0, duration_ms=300, service="api", level="ERROR", message="timeout request 7"),
    rec(2, 3000.0, duration_ms=1200, service="api", level="WARN", message="timeout request 8"),
    rec(3, 2000.0, duration_ms=50, service="db", level="ERROR", message="conn reset 10.0.0.1"),
    rec(4, 500.0, duration_ms=900.5, service="api", message="timeout request 9"),
    rec(5, 4000.0, service="cache", level="ERROR", message=None),  # no duration, no message
]


def agg(spec: Any, records: list[dict[str, Any]] = RECORDS) -> Any:
    return make_aggregator(spec)(records)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("count", 5),
        ({"distinct": "service"}, ["api", "cache", "db"]),
        ({"distinct": "level"}, ["ERROR", "WARN"]),  # absent values are skipped
        ({"max": "duration_ms"}, 1200),
        ({"min": "duration_ms"}, 50),
        ({"sum": "duration_ms"}, 2450.5),
        ({"avg": "duration_ms"}, 612.625),
        ({"percentile": {"field": "duration_ms", "p": 50}}, 300),
        ({"percentile": {"field": "duration_ms", "p": 99}}, 1200),
        ({"percentile": {"field": "duration_ms", "p": 25}}, 50),
        ({"percentile": {"field": "duration_ms", "p": 75}}, 900.5),
    ],
)
def test_value_aggregations(spec: Any, expected: Any) -> None:
    assert agg(spec) == expected


@pytest.mark.parametrize(
    ("spec", "expected_id"),
    [
        ("first", "1"),  # first in source order
        ("latest", "5"),  # by time
        ("earliest", "4"),
    ],
)
def test_record_aggregations(spec: str, expected_id: str) -> None:
    assert agg(spec)["id"] == expected_id


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("count", 0),
        ("first", None),
        ("latest", None),
        ("earliest", None),
        ({"distinct": "service"}, []),
        ({"max": "duration_ms"}, None),
        ({"min": "duration_ms"}, None),
        ({"sum": "duration_ms"}, 0),
        ({"avg": "duration_ms"}, None),
        ({"percentile": {"field": "duration_ms", "p": 99}}, None),
        ({"top": {"by": "duration_ms"}}, []),
        (
            {"pattern_of": "message"},
            {"pattern": "", "count": 0, "share": 0.0, "samples": [], "patterns": []},
        ),
    ],
)
def test_no_records(spec: Any, expected: Any) -> None:
    assert agg(spec, []) == expected


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1, 2, 3, 4, 5], 99, 5),
        ([1, 2, 3, 4, 5], 80, 4),  # ceil(0.8 * 5) = 4 -> 4th value
        ([1, 2, 3, 4, 5], 81, 5),
        ([1, 2, 3, 4, 5], 20, 1),
        ([1, 2, 3, 4, 5], 0.1, 1),
        ([5, 1, 4, 2, 3], 50, 3),  # order does not matter
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 100, 100),
        ([7], 50, 7),
        ([], 50, None),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], p: float, expected: Any) -> None:
    assert percentile(values, p) == expected


def test_numeric_aggregations_read_numeric_strings_and_durations() -> None:
    records = [{"v": "10m"}, {"v": "30"}, {"v": 15}, {"v": "n/a"}, {"v": True}]
    assert agg({"max": "v"}, records) == 600
    assert agg({"min": "v"}, records) == 15
    assert agg({"sum": "v"}, records) == 645
    assert agg({"avg": "v"}, records) == 215


def test_average_is_rounded_to_three_places() -> None:
    assert agg({"avg": "v"}, [{"v": 1}, {"v": 1}, {"v": 2}]) == 1.333


@pytest.mark.parametrize(
    ("top", "expected_ids"),
    [
        ({"by": "duration_ms"}, ["2", "4", "1", "3"]),  # default: n 5, desc; no value: left out
        ({"by": "duration_ms", "n": 2}, ["2", "4"]),
        ({"by": "duration_ms", "n": 2, "order": "asc"}, ["3", "1"]),
        ({"by": "duration_ms", "order": "desc", "n": 1000}, ["2", "4", "1", "3"]),
    ],
)
def test_top(top: dict[str, Any], expected_ids: list[str]) -> None:
    assert [r["id"] for r in agg({"top": top})] == expected_ids


def test_pattern_of_names_the_dominant_pattern() -> None:
    top = agg({"pattern_of": "message"})
    assert top["pattern"] == "timeout request <num>"
    assert top["count"] == 3
    assert top["share"] == 0.75  # of the 4 records that have a message
    assert [r["id"] for r in top["samples"]] == ["1", "2", "4"]
    assert top["patterns"] == [
        {"pattern": "timeout request <num>", "count": 3, "share": 0.75},
        {"pattern": "conn reset <ip>", "count": 1, "share": 0.25},
    ]


def test_pattern_of_samples_limit() -> None:
    top = agg({"pattern_of": {"field": "message", "samples": 2}})
    assert [r["id"] for r in top["samples"]] == ["1", "2"]
    assert top["count"] == 3


def test_pattern_of_ties_go_to_the_pattern_seen_first() -> None:
    records = [{"m": "b 1"}, {"m": "a 1"}, {"m": "a 2"}, {"m": "b 2"}]
    assert agg({"pattern_of": "m"}, records)["pattern"] == "b <num>"


def test_kind_of_and_record_kinds() -> None:
    assert kind_of("latest") == "latest"
    assert kind_of({"top": {"by": "x"}}) == "top"
    assert {"first", "latest", "earliest", "top", "pattern_of", "dominant"} == RECORD_AGGREGATIONS
    with pytest.raises(ValueError, match="unknown aggregation"):
        make_aggregator({"median": "x"})


# Where `math.ceil(p / 100 * n)` in floating point lands one rank too high: 7 / 100 * 100
# is 7.000000000000001. The bench reports its latencies with the same nearest rank.
FLOAT_TRAPS = [(p, 100) for p in (7, 14, 28, 55, 56)] + [(99.9, 1000), (0.7, 1000), (57, 100)]


def _percentile_functions() -> dict[str, Any]:
    from bench import handwritten, run

    return {
        "engine": percentile,
        "aggregate:": lambda values, p: make_aggregator({"percentile": {"field": "v", "p": p}})(
            [{"v": v} for v in values]
        ),
        "bench.run": run.pct,
        "bench.handwritten": handwritten._percentile,
    }


@pytest.mark.parametrize(("p", "n"), FLOAT_TRAPS)
def test_percentile_rank_is_exact_where_float_ceil_is_off_by_one(p: float, n: int) -> None:
    values = list(range(1, n + 1))  # the k-th smallest value is k
    expected = round(p * 10) * n // 1000  # p% of n is a whole number in every case here
    for name, fn in _percentile_functions().items():
        assert fn(values, p) == expected, name


def test_percentile_matches_the_definition_for_every_tenth_of_a_percent() -> None:
    # The smallest k with at least p% of n values at or below it: k * 1000 >= p * 10 * n.
    for n in (1, 3, 7, 10, 100, 1000):
        values = list(range(1, n + 1))
        for tenths in range(1, 1001):
            p = tenths / 10
            expected = max(1, -(-tenths * n // 1000))
            assert percentile(values, p) == expected, (n, p)
