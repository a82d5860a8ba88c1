"""Pattern masking: the variable parts of a log line become placeholders."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from engine.rules.patterns import cluster, mask  # noqa: E402


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        # numbers: integers, decimals, signed, with a short unit
        ("upstream timeout request 42", "upstream timeout request <num>"),
        ("retry 3 of 5 after 2.5s", "retry <num> of <num> after <num>"),
        ("took 250ms, budget 100ms", "took <num>, budget <num>"),
        ("balance -17 now", "balance <num> now"),
        ("disk 93% full", "disk <num>% full"),
        ("worker-12 crashed", "worker-<num> crashed"),  # ordinals of pods and workers too
        ("http2 upgrade", "http2 upgrade"),  # digits inside a word: kept
        ("v2 api", "v2 api"),
        # hex ids (with at least one digit and one letter), 0x literals
        ("trace 4bf92f3577b34da6 failed", "trace <hex> failed"),
        ("commit a39bf2c deployed", "commit <hex> deployed"),
        ("segfault at 0x7ffd5e8c", "segfault at <hex>"),
        ("cafebabe stays", "cafebabe stays"),  # letters only: a word
        ("deadbeef1 goes", "<hex> goes"),
        # UUIDs
        (
            "order 123e4567-e89b-12d3-a456-426614174000 not found",
            "order <uuid> not found",
        ),
        ("ID 123E4567-E89B-12D3-A456-426614174000", "ID <uuid>"),
        # IPv4 (with a port) and IPv6
        ("connect to 10.0.0.7 refused", "connect to <ip> refused"),
        ("dial tcp 192.168.1.20:5432: i/o timeout", "dial tcp <ip>: i/o timeout"),
        ("peer 2001:db8:85a3:0:0:8a2e:370:7334 reset", "peer <ip> reset"),
        ("peer fe80:0:0:0:202:b3ff:fe1e:8329 gone", "peer <ip> gone"),
        # quoted strings, double and single, with escapes
        ('user "alice" not found', 'user "<str>" not found'),
        ("key 'cart:99' missing", "key '<str>' missing"),
        ('say "a \\"quoted\\" word" now', 'say "<str>" now'),
        # whitespace is normalised
        ("  many   spaces\there  ", "many spaces here"),
        # several at once
        (
            'GET "/api/v1/items" from 10.1.2.3 took 1200ms (req 9f86d081)',
            'GET "<str>" from <ip> took <num> (req <hex>)',
        ),
    ],
)
def test_mask(message: str, expected: str) -> None:
    assert mask(message) == expected


def test_the_same_shape_masks_to_the_same_pattern() -> None:
    a = mask("upstream timeout request 1 from 10.0.0.1")
    b = mask("upstream timeout request 99999 from 172.16.5.4")
    assert a == b == "upstream timeout request <num> from <ip>"


def test_cluster_groups_counts_shares_and_samples() -> None:
    texts = [f"upstream timeout request {i}" for i in range(6)] + [
        "db down 1",
        "db down 2",
    ]
    records = [{"n": i} for i in range(len(texts))]
    groups = cluster(records, texts, samples=2)
    assert [(g.pattern, g.count, g.share) for g in groups] == [
        ("upstream timeout request <num>", 6, 0.75),
        ("db down <num>", 2, 0.25),
    ]
    assert groups[0].samples == [{"n": 0}, {"n": 1}]
    assert groups[0].as_scope()["pattern"] == "upstream timeout request <num>"


def test_cluster_of_nothing() -> None:
    assert cluster([], []) == []
