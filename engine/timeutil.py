"""RFC 3339 timestamps and human durations (`30m`, `1h30m`), always in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")
# ASCII digits only (re.ASCII: \d would match full-width and other Unicode digits), 0 to 9
# fractional digits (nanoseconds, as Go writes them), offsets checked in parse_ts.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$",
    re.ASCII,
)
MAX_OFFSET = timedelta(hours=14)  # the widest offset in use (UTC+14:00, Line Islands)
# Go's zero time: Alertmanager's way of saying "no end".
GO_ZERO_YEAR = 1


class TimeFormatError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """`30m`, `1h30m`, `90s`, `2d`, `250ms` -> timedelta. Raises TimeFormatError."""
    if not isinstance(text, str) or not text:
        raise TimeFormatError(f"{text!r} is not a duration (use forms like 30s, 10m, 1h30m, 2d)")
    m = _DURATION.match(text.strip())
    if not m or not any(m.groups()):
        raise TimeFormatError(f"{text!r} is not a duration (use forms like 30s, 10m, 1h30m, 2d)")
    d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return timedelta(days=d, hours=h, minutes=mi, seconds=s, milliseconds=ms)


def is_duration(text: object) -> bool:
    if not isinstance(text, str):
        return False
    try:
        parse_duration(text)
    except TimeFormatError:
        return False
    return True


def format_duration(seconds: float) -> str:
    """600 -> '10m', 3725 -> '1h2m5s', 0.25 -> '250ms'."""
    neg = seconds < 0
    seconds = abs(seconds)
    if seconds < 1:
        out = f"{round(seconds * 1000)}ms"
    else:
        total = round(seconds)
        parts = []
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if total >= size:
                parts.append(f"{total // size}{unit}")
                total %= size
        out = "".join(parts) or "0s"
    return f"-{out}" if neg else out


def parse_ts(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (0 to 9 fractional digits, an offset within ±14:00) into
    an aware UTC datetime."""
    if not isinstance(text, str):
        raise TimeFormatError(f"expected an RFC 3339 timestamp string, got {type(text).__name__}")
    m = _RFC3339.match(text.strip())
    if not m:
        raise TimeFormatError(f"{text!r} is not an RFC 3339 timestamp{_why(text)}")
    year, month, day, hour, minute, second, frac, tz = m.groups()
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    if tz in ("Z", "z"):
        offset = timedelta(0)
    else:
        sign = 1 if tz[0] == "+" else -1
        hours, minutes = int(tz[1:3]), int(tz[4:6])
        offset = sign * timedelta(hours=hours, minutes=minutes)
        if minutes > 59 or abs(offset) > MAX_OFFSET:
            raise TimeFormatError(
                f"{text!r} has an invalid offset {tz}: offsets are -14:00 to +14:00"
            )
    try:
        naive = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro
        )
    except ValueError as exc:
        raise TimeFormatError(f"{text!r} is not a valid date and time: {exc}") from None
    if naive.year == GO_ZERO_YEAR:
        return naive.replace(tzinfo=UTC)
    try:
        return (naive - offset).replace(tzinfo=UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is past datetime.max in UTC
        raise TimeFormatError(f"{text!r} is out of the supported range") from None


_FRACTION = re.compile(r"\.(\d+)", re.ASCII)


def _why(text: str) -> str:
    """What makes `text` not RFC 3339, where it is one of the less obvious reasons."""
    if not text.isascii():
        return " (only ASCII characters and digits 0-9)"
    fraction = _FRACTION.search(text)
    if fraction and len(fraction.group(1)) > 9:
        return " (at most 9 fractional digits)"
    return " (e.g. 2026-01-31T12:00:00Z)"


def is_go_zero(ts: datetime) -> bool:
    return ts.year == GO_ZERO_YEAR


def format_ts(ts: datetime) -> str:
    """Aware datetime -> RFC 3339 in UTC, with milliseconds only when present."""
    ts = ts.astimezone(UTC)
    year = f"{ts.year:04d}"  # strftime's %Y does not zero-pad years before 1000 on glibc
    if ts.microsecond:
        return year + ts.strftime("-%m-%dT%H:%M:%S.%f").rstrip("0") + "Z"
    return year + ts.strftime("-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def parse_relative(text: str, now: datetime) -> datetime:
    """A time in a rule test or context file: an RFC 3339 timestamp, or `-3m` / `+1m` from now."""
    if isinstance(text, str) and text[:1] in "+-" and is_duration(text[1:]):
        delta = parse_duration(text[1:])
        return now - delta if text[0] == "-" else now + delta
    if isinstance(text, datetime):
        return text.astimezone(UTC)
    return parse_ts(text)
