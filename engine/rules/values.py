"""Plain values of the rule language: the missing marker, and text read as numbers."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from engine.timeutil import is_duration, parse_duration

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()


def to_number(value: Any) -> float | None:
    """Numbers as they are; durations (`10m`) in seconds; numeric strings parsed."""
    if isinstance(value, bool) or value is None or value is MISSING:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _short_text_number(value) if len(value) <= 64 else _text_number(value)
    return None


def _text_number(value: str) -> float | None:
    if is_duration(value):
        return parse_duration(value).total_seconds()
    try:
        return float(value)
    except ValueError:
        return None


# Cached for short texts: the same operands (`10m`, params, labels) and field values are
# converted alert after alert, and parse_duration is a regex and a raise each time.
_short_text_number = lru_cache(maxsize=4096)(_text_number)


def plain_text(x: Any) -> bool:
    """A str that is not a number or duration: `_equal(v, x)` is then just `v == x`."""
    if type(x) is not str:
        return False
    try:
        return to_number(x) is None
    except Exception:  # unsure: the general path decides, as before
        return False
