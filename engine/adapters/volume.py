"""What the collector-facing adapters store: collectors send everything, rules need little.

`/context/*` keeps storing whatever it is sent; OTLP and Loki pushes go through this
filter first. Logs: a minimum level (default WARN). Traces: spans at least
`min_span_ms` long, plus every span with an error status (default: all spans, 0 ms).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

# Severity order of the level words the adapters produce (engine.adapters.*): OTLP's
# severity ranges and the words log lines use, normalised to these.
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_ALIASES = {
    "WARNING": "WARN",
    "ERR": "ERROR",
    "CRITICAL": "FATAL",
    "CRIT": "FATAL",
    "EMERG": "FATAL",
    "ALERT": "FATAL",
    "PANIC": "FATAL",
    "NOTICE": "INFO",
    "INFORMATION": "INFO",
    "DBG": "DEBUG",
}


def normalise_level(word: str) -> str | None:
    """A level word as one of LEVELS, or None when it is not one."""
    upper = word.strip().upper()
    upper = _ALIASES.get(upper, upper)
    return upper if upper in LEVELS else None


@dataclass(frozen=True)
class VolumeFilter:
    min_log_level: str = "WARN"
    min_span_ms: float = 0.0

    def keep_log(self, level: str) -> bool:
        """A log line of an unknown level is kept: dropping what we cannot rank would
        hide the very lines an odd producer marks as errors."""
        known = normalise_level(level)
        return known is None or LEVELS.index(known) >= LEVELS.index(self.min_log_level)

    def keep_span(self, duration_ms: float, error: bool) -> bool:
        return error or duration_ms >= self.min_span_ms


def _level(text: str) -> str:
    level = normalise_level(text)
    if level is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a level (use one of {', '.join(LEVELS)})"
        )
    return level


def _millis(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration in milliseconds (>= 0)")
    return value


def add_volume_arguments(p: argparse.ArgumentParser, env_prefix: str) -> None:
    p.add_argument(
        "--ingest-min-level",
        type=_level,
        default=os.environ.get(env_prefix + "INGEST_MIN_LEVEL", "WARN"),
        help="OTLP and Loki log lines below this level are not stored (default WARN) "
        f"[env {env_prefix}INGEST_MIN_LEVEL]",
    )
    p.add_argument(
        "--ingest-min-span-ms",
        type=_millis,
        default=os.environ.get(env_prefix + "INGEST_MIN_SPAN_MS", "0"),
        help="OTLP spans shorter than this are not stored unless their status is an error "
        f"(default 0: every span) [env {env_prefix}INGEST_MIN_SPAN_MS]",
    )


def volume_from_args(args: argparse.Namespace) -> VolumeFilter:
    return VolumeFilter(min_log_level=args.ingest_min_level, min_span_ms=args.ingest_min_span_ms)
