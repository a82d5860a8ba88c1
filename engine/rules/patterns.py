"""Cluster log messages into patterns by masking their variable parts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Order matters: the wider shapes are masked before the numbers inside them.
_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'"(?:[^"\\]|\\.)*"'), '"<str>"'),
    (re.compile(r"'(?:[^'\\]|\\.)*'"), "'<str>'"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "<ip>"),
    (re.compile(r"\b(?:[0-9a-fA-F]{1,4}:){2,7}[0-9a-fA-F]{1,4}\b"), "<ip>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    # A hex id: 6+ hex characters with at least one digit (plain words stay words).
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"), "<hex>"),
    (re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[a-zA-Z%]{1,3})?\b"), "<num>"),
)
_SPACES = re.compile(r"\s+")


def mask(message: str) -> str:
    """`upstream timeout request 42 from 10.0.0.7` -> `upstream timeout request <num> from <ip>`."""
    for pattern, replacement in _MASKS:
        message = pattern.sub(replacement, message)
    return _SPACES.sub(" ", message).strip()


@dataclass(frozen=True)
class PatternGroup:
    pattern: str
    count: int
    share: float
    samples: list[Any]

    def as_scope(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "count": self.count,
            "share": self.share,
            "samples": self.samples,
        }


def cluster(records: Sequence[Any], texts: Sequence[str], samples: int = 5) -> list[PatternGroup]:
    """Group records by the masked form of their text, largest group first (ties: the
    pattern seen first, i.e. the newest when records come newest first)."""
    groups: dict[str, list[Any]] = {}
    for record, text in zip(records, texts, strict=True):
        groups.setdefault(mask(text), []).append(record)
    total = len(records) or 1
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    return [PatternGroup(p, len(rs), len(rs) / total, rs[:samples]) for p, rs in ordered]
