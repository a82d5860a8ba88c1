"""Parse context records pushed to /context/{deploys,logs,traces} (the Go original's bodies).

- deploy: {service, commit, author?, when?}
- log:    {service, level?, message, ts?}
- trace:  {trace_id, service, duration_ms, ts?}
`when` and `ts` are interchangeable; a missing time means "received now". Any other key
is kept in the record's `attributes`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeGuard, cast

from engine.alerts import PayloadError, _type
from engine.store.base import NewContext, new_context
from engine.timeutil import TimeFormatError, format_ts, parse_ts

MAX_TEXT = 64 * 1024
MAX_NAME = 256


@dataclass(frozen=True)
class ContextLimits:
    max_records: int = 10_000
    max_future: timedelta = timedelta(minutes=5)


# kind -> (required string fields, optional string fields, numeric fields)
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "deploys": (("service", "commit"), ("author",), ()),
    "logs": (("service", "message"), ("level",), ()),
    "traces": (("service", "trace_id"), (), ("duration_ms",)),
}
_DEFAULTS = {"deploys": {"author": "unknown"}, "logs": {"level": "ERROR"}, "traces": {}}
_TIME_KEYS = ("when", "ts")
# Keys that are not attributes, per kind (built once: parse_record runs per record).
_KNOWN = {
    kind: frozenset({*required, *optional, *numeric, *_TIME_KEYS, "attributes"})
    for kind, (required, optional, numeric) in _FIELDS.items()
}
# The shape nearly every client sends (UTC, "Z", up to microseconds). For it
# `datetime.fromisoformat` gives exactly what `parse_ts` gives (same aware UTC datetime,
# same errors for impossible dates) at a fraction of the cost; anything else goes to
# parse_ts. Found by `python -m bench` (docs/PERFORMANCE.md): parse_ts was ~20% of the
# server's CPU on 1,000-record batches.
_COMMON_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z")


def _parse_time(text: Any) -> datetime:
    if isinstance(text, str) and _COMMON_TS.fullmatch(text):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass  # an impossible date: parse_ts words the error
    return parse_ts(text)


def _string(obj: dict[str, Any], key: str, where: str, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise PayloadError(f"{where}.{key}", "is required")
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{where}.{key}", f"must be a string, got {_type(value)}")
    limit = MAX_TEXT if key == "message" else MAX_NAME
    if required and not value.strip():
        raise PayloadError(f"{where}.{key}", "must not be empty")
    if len(value) > limit:
        raise PayloadError(f"{where}.{key}", f"is {len(value)} characters; the limit is {limit}")
    if "\x00" in value:
        raise PayloadError(f"{where}.{key}", "contains a NUL character")
    return value


def _has_nul(value: Any) -> bool:
    """A NUL in any string, key or value, of a nested attribute (depth is capped by the body
    reader)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _attributes(extra: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in extra.items():
        if isinstance(value, dict | list):
            encoded = json.dumps(value)
            if len(encoded) > MAX_TEXT:
                raise PayloadError(f"{where}.{key}", f"is larger than {MAX_TEXT} bytes")
            if _has_nul(value):
                raise PayloadError(f"{where}.{key}", "contains a NUL character")
        elif isinstance(value, str) and ("\x00" in value or len(value) > MAX_TEXT):
            raise PayloadError(f"{where}.{key}", "contains a NUL character or is too long")
        if "\x00" in key:
            raise PayloadError(where, "an attribute name contains a NUL character")
        out[key] = value
    return out


def parse_record(
    kind: str, obj: Any, where: str, now: datetime, limits: ContextLimits = ContextLimits()
) -> NewContext:
    if not isinstance(obj, dict):
        raise PayloadError(where, f"must be a JSON object, got {_type(obj)}")
    required, optional, numeric = _FIELDS[kind]
    fields: dict[str, Any] = dict(_DEFAULTS[kind])
    for key in required:
        fields[key] = _string(obj, key, where, True)
    for key in optional:
        value = _string(obj, key, where, False)
        if value is not None:
            fields[key] = value
    for key in numeric:
        value = obj.get(key)
        if value is None:
            raise PayloadError(f"{where}.{key}", "is required")
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise PayloadError(f"{where}.{key}", f"must be a number, got {_type(value)}")
        if value < 0 or value > 1e12:
            raise PayloadError(f"{where}.{key}", "must be between 0 and 1e12")
        fields[key] = value
    if kind == "logs":
        fields["level"] = fields["level"].upper()
    ts = now
    for key in _TIME_KEYS:
        if obj.get(key) not in (None, ""):
            try:
                ts = _parse_time(obj[key])
            except TimeFormatError as exc:
                raise PayloadError(f"{where}.{key}", str(exc)) from None
            if ts > now + limits.max_future:
                raise PayloadError(
                    f"{where}.{key}",
                    f"{format_ts(ts)} is in the future (more than {limits.max_future} past the "
                    f"server's clock, {format_ts(now)})",
                )
            break
    known = _KNOWN[kind]
    attrs = obj.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise PayloadError(f"{where}.attributes", f"must be an object, got {_type(attrs)}")
    attrs = {**attrs, **{k: v for k, v in obj.items() if k not in known}}
    if attrs:
        fields["attributes"] = _attributes(attrs, where)
    service = fields.pop("service")
    return NewContext(kind=kind, service=service, ts=ts, fields=fields)


def parse_batch(
    kind: str, body: Any, now: datetime, limits: ContextLimits = ContextLimits()
) -> list[NewContext]:
    """One object, or an array of them (NDJSON arrives here already split into a list)."""
    if isinstance(body, list):
        if not body:
            raise PayloadError("", "the batch is empty")
        if len(body) > limits.max_records:
            raise PayloadError(
                "", f"the batch has {len(body)} records; the limit is {limits.max_records}"
            )
        latest = now + limits.max_future
        fast = _FAST[kind]
        out = []
        for i, item in enumerate(body):
            record = fast(item, now, latest)
            out.append(record or parse_record(kind, item, f"[{i}]", now, limits))
        return out
    record = _FAST[kind](body, now, now + limits.max_future)
    return [record or parse_record(kind, body, "body", now, limits)]


# The fast path of parse_batch: one function per kind that accepts only the plain shape of
# a valid record (exact types, no attributes, a "…Z" time or none) and builds the very
# NewContext parse_record builds (same fields, in the same order). Anything else returns
# None, and parse_record decides, naming the field of an error as before. Found by
# `python -m bench`: per-record validation was about half of a 1,000-record request.
_PLAIN = {kind: known - {"attributes"} for kind, known in _KNOWN.items()}


def _ok_name(value: Any) -> TypeGuard[str]:  # a required string other than "message"
    return (
        type(value) is str
        and len(value) <= MAX_NAME
        and "\x00" not in value
        and bool(value.strip())
    )


def _fast_time(obj: dict[str, Any], now: datetime, latest: datetime) -> datetime | None:
    """The record's time when it is absent or plainly valid, else None."""
    text = obj.get("when")
    if text is None or text == "":
        text = obj.get("ts")
        if text is None or text == "":
            return now
    if type(text) is not str or not _COMMON_TS.fullmatch(text):
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts <= latest else None


def _fast_logs(obj: Any, now: datetime, latest: datetime) -> NewContext | None:
    if type(obj) is not dict or not obj.keys() <= _PLAIN["logs"]:
        return None
    service, message, level = obj.get("service"), obj.get("message"), obj.get("level")
    if not _ok_name(service) or type(message) is not str or len(message) > MAX_TEXT:
        return None
    if "\x00" in message or not message.strip():
        return None
    if level is None:
        level = "ERROR"
    elif type(level) is not str or len(level) > MAX_NAME or "\x00" in level:
        return None
    ts = _fast_time(obj, now, latest)
    if ts is None:
        return None
    return new_context("logs", service, ts, {"level": level.upper(), "message": message})


def _fast_traces(obj: Any, now: datetime, latest: datetime) -> NewContext | None:
    if type(obj) is not dict or not obj.keys() <= _PLAIN["traces"]:
        return None
    service, trace_id, duration = obj.get("service"), obj.get("trace_id"), obj.get("duration_ms")
    if not (_ok_name(service) and _ok_name(trace_id)):
        return None
    if type(duration) not in (int, float) or not 0 <= cast(float, duration) <= 1e12:
        return None  # NaN fails the comparison too
    ts = _fast_time(obj, now, latest)
    if ts is None:
        return None
    return new_context("traces", service, ts, {"trace_id": trace_id, "duration_ms": duration})


def _fast_deploys(obj: Any, now: datetime, latest: datetime) -> NewContext | None:
    if type(obj) is not dict or not obj.keys() <= _PLAIN["deploys"]:
        return None
    service, commit, author = obj.get("service"), obj.get("commit"), obj.get("author")
    if not (_ok_name(service) and _ok_name(commit)):
        return None
    if author is None:
        author = "unknown"
    elif type(author) is not str or len(author) > MAX_NAME or "\x00" in author:
        return None
    ts = _fast_time(obj, now, latest)
    if ts is None:
        return None
    return new_context("deploys", service, ts, {"author": author, "commit": commit})


_FAST = {"logs": _fast_logs, "traces": _fast_traces, "deploys": _fast_deploys}
