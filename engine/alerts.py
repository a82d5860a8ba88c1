"""Parse what Alertmanager posts (webhook v4), a bare alert, or a list of alerts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.model import Alert
from engine.timeutil import TimeFormatError, format_ts, is_go_zero, parse_ts

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = b"\xff"


class PayloadError(ValueError):
    """A client's mistake in a request body: names the field and the problem."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def to_dict(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field}


@dataclass(frozen=True)
class AlertLimits:
    max_alerts: int = 1000
    max_labels: int = 100
    max_label_name: int = 256
    max_label_value: int = 8192
    # startsAt further ahead of `now` than this is refused (the server allows for clock
    # skew); None: no check (offline replay and rule tests choose their own `now`).
    max_future: timedelta | None = None


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint: FNV-1a 64 over the sorted label names and values."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for chunk in (name.encode(), _SEPARATOR, labels[name].encode(), _SEPARATOR):
            for byte in chunk:
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _string_map(obj: Any, field: str, limits: AlertLimits, *, required: bool) -> dict[str, str]:
    if obj is None:
        if required:
            raise PayloadError(field, "is required: an object of string names to string values")
        return {}
    if not isinstance(obj, dict):
        raise PayloadError(field, f"must be an object of strings, got {_type(obj)}")
    if len(obj) > limits.max_labels:
        raise PayloadError(field, f"has {len(obj)} entries; the limit is {limits.max_labels}")
    out = {}
    for name, value in obj.items():
        where = f"{field}.{name}"
        if not isinstance(value, str):
            raise PayloadError(where, f"must be a string, got {_type(value)}")
        if not name or len(name) > limits.max_label_name:
            raise PayloadError(where, f"name must be 1 to {limits.max_label_name} characters")
        if len(value) > limits.max_label_value:
            raise PayloadError(
                where, f"is {len(value)} characters; the limit is {limits.max_label_value}"
            )
        if "\x00" in name or "\x00" in value:
            raise PayloadError(where, "contains a NUL character")
        out[name] = value
    return out


def _type(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(v),
        "null" if v is None else "a number" if isinstance(v, int | float) else type(v).__name__,
    )


def _time(obj: Mapping[str, Any], key: str, where: str) -> datetime | None:
    raw = obj.get(key)
    if raw is None or raw == "":
        return None
    try:
        ts = parse_ts(raw)
    except TimeFormatError as exc:
        raise PayloadError(f"{where}.{key}", str(exc)) from None
    return None if is_go_zero(ts) else ts


def parse_alert(obj: Any, where: str, now: datetime, limits: AlertLimits = AlertLimits()) -> Alert:
    """One alert object. Unknown keys are ignored (Grafana's Alertmanager adds some)."""
    if not isinstance(obj, dict):
        raise PayloadError(where, f"must be an alert object, got {_type(obj)}")
    labels = _string_map(obj.get("labels"), f"{where}.labels", limits, required=True)
    if not labels:
        raise PayloadError(f"{where}.labels", "must have at least one label (alertname)")
    annotations = _string_map(
        obj.get("annotations"), f"{where}.annotations", limits, required=False
    )
    starts_at = _time(obj, "startsAt", where) or now
    if limits.max_future is not None and starts_at > now + limits.max_future:
        raise PayloadError(
            f"{where}.startsAt",
            f"{format_ts(starts_at)} is in the future (more than {limits.max_future} past the "
            f"server's clock, {format_ts(now)})",
        )
    ends_at = _time(obj, "endsAt", where)
    status = obj.get("status")
    if status is None:
        status = "resolved" if ends_at is not None and ends_at <= now else "firing"
    if status not in ("firing", "resolved"):
        raise PayloadError(f"{where}.status", f'must be "firing" or "resolved", got {status!r}')
    fp = obj.get("fingerprint")
    if fp in (None, ""):
        fp = fingerprint(labels)
    elif not isinstance(fp, str) or len(fp) > 64 or not fp.isalnum():
        raise PayloadError(f"{where}.fingerprint", "must be up to 64 letters and digits")
    url = obj.get("generatorURL") or ""
    if not isinstance(url, str):
        raise PayloadError(f"{where}.generatorURL", f"must be a string, got {_type(url)}")
    if "\x00" in url or len(url) > limits.max_label_value:
        raise PayloadError(
            f"{where}.generatorURL",
            f"must be at most {limits.max_label_value} characters, without NUL",
        )
    return Alert(
        fingerprint=fp,
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=url,
    )


def parse_payload(body: Any, now: datetime, limits: AlertLimits = AlertLimits()) -> list[Alert]:
    """An Alertmanager envelope (`{"alerts": [...]}`), a bare alert, or a list of alerts."""
    if isinstance(body, dict) and "alerts" in body:
        items, where = body["alerts"], "alerts"
        if not isinstance(items, list):
            raise PayloadError("alerts", f"must be an array, got {_type(items)}")
    elif isinstance(body, list):
        items, where = body, ""
    elif isinstance(body, dict):
        return [parse_alert(body, "alert", now, limits)]
    else:
        raise PayloadError(
            "", f"expected an Alertmanager webhook, an alert or a list of alerts, got {_type(body)}"
        )
    if not items:
        raise PayloadError(where, "contains no alerts")
    if len(items) > limits.max_alerts:
        raise PayloadError(where, f"has {len(items)} alerts; the limit is {limits.max_alerts}")
    return [parse_alert(a, f"{where}[{i}]", now, limits) for i, a in enumerate(items)]
