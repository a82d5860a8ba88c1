"""JSON decoding that refuses non-finite numbers.

Python's `json` reads `NaN`, `Infinity` and numbers too large for a float (`1e999`,
`-1e400`) as nan or ±inf. Stored, such a value can never be answered again: JSON has no
way to write it. Every JSON body is decoded here, so the value is refused (400) before
anything is stored.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NonFiniteNumber(ValueError):
    """A number that is NaN or infinite once decoded."""


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonFiniteNumber(f"the number {text[:40]} is out of range: numbers must be finite")
    return value


def _constant(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not valid JSON: numbers must be finite")


def loads(text: str | bytes) -> Any:
    """`json.loads`, raising NonFiniteNumber (a ValueError) for NaN, ±Infinity and numbers
    that overflow a float, wherever they are nested."""
    return json.loads(text, parse_float=_float, parse_constant=_constant)
