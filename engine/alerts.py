"""Parse what Alertmanager posts (webhook v4), a bare alert, or a list of alerts.

Sizes are soft limits: a label or annotation over `max_label_value` (or a name over
`max_label_name`) is cut to fit, ending in a visible marker (`…[truncated 1,808 chars]`),
and entries past `max_labels` are dropped (named in the `incident_pilot_truncated`
annotation), always after the fingerprint is computed from the original labels, so it
stays Alertmanager's. One oversized field never costs the group its other alerts: only
a wrong type, an empty name or a NUL character is the sender's mistake (400). What was cut
is reported in `Truncation`s (the server counts and logs them)."""

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
    # Alerts per batch: the server processes a larger envelope in batches of this many
    # (never refuses it for its count; the body size is the hard limit).
    max_alerts: int = 1000
    max_labels: int = 100
    max_label_name: int = 256
    max_label_value: int = 8192
    # startsAt further ahead of `now` than this is refused (the server allows for clock
    # skew); None: no check (offline replay and rule tests choose their own `now`).
    max_future: timedelta | None = None


TRUNCATED_ANNOTATION = "incident_pilot_truncated"


@dataclass(frozen=True)
class Truncation:
    """One field cut to the soft limits: `field` is "label", "annotation" or
    "generator_url"; `name` the label or annotation name (as received); `removed` the
    characters cut from its value (or name), or 0 when the entry was dropped whole."""

    fingerprint: str
    field: str
    name: str
    removed: int


def marker(removed: int) -> str:
    return f"…[truncated {removed:,} chars]"


def truncate(text: str, limit: int) -> tuple[str, int]:
    """`text` cut to at most `limit` characters, the last of them the marker, and the
    number of characters removed (0: it fitted). A limit shorter than the marker keeps
    only the marker."""
    if len(text) <= limit:
        return text, 0
    keep = max(0, limit - len(marker(len(text))))  # the longest marker always fits
    while keep + 1 + len(marker(len(text) - keep - 1)) <= limit:  # its digits may shrink
        keep += 1
    return text[:keep] + marker(len(text) - keep), len(text) - keep


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint: FNV-1a 64 over the sorted label names and values."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for chunk in (name.encode(), _SEPARATOR, labels[name].encode(), _SEPARATOR):
            for byte in chunk:
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def _string_map(obj: Any, field: str, *, required: bool) -> dict[str, str]:
    """The whole map, checked for types and NUL characters (sizes come later)."""
    if obj is None:
        if required:
            raise PayloadError(field, "is required: an object of string names to string values")
        return {}
    if not isinstance(obj, dict):
        raise PayloadError(field, f"must be an object of strings, got {_type(obj)}")
    for name, value in obj.items():
        where = f"{field}.{name}"
        if not isinstance(value, str):
            raise PayloadError(where, f"must be a string, got {_type(value)}")
        if not name:
            raise PayloadError(where, "name must not be empty")
        if "\x00" in name or "\x00" in value:
            raise PayloadError(where, "contains a NUL character")
    return dict(obj)


def _fit_map(
    full: dict[str, str], kind: str, fp: str, limits: AlertLimits, cuts: list[Truncation]
) -> tuple[dict[str, str], list[str]]:
    """`full` within the soft limits, and the names of the entries dropped past
    `max_labels` (`alertname` is always kept). Each cut is appended to `cuts`."""
    names = list(full)
    if len(names) > limits.max_labels:
        if "alertname" in full:
            names.remove("alertname")
            names.insert(0, "alertname")
        names, dropped = names[: limits.max_labels], names[limits.max_labels :]
    else:
        dropped = []
    out: dict[str, str] = {}
    for name in names:
        key, name_cut = truncate(name, limits.max_label_name)
        value, value_cut = truncate(full[name], limits.max_label_value)
        if key in out:  # two long names cut to the same text: the first one stays
            dropped.append(name)
            continue
        out[key] = value
        if name_cut or value_cut:
            cuts.append(Truncation(fp, kind, name, name_cut + value_cut))
    cuts.extend(Truncation(fp, kind, name, 0) for name in dropped)
    return out, dropped


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


def parse_alert(
    obj: Any,
    where: str,
    now: datetime,
    limits: AlertLimits = AlertLimits(),
    cuts: list[Truncation] | None = None,
) -> Alert:
    """One alert object. Unknown keys are ignored (Grafana's Alertmanager adds some).
    What was cut to the soft limits is appended to `cuts`."""
    if not isinstance(obj, dict):
        raise PayloadError(where, f"must be an alert object, got {_type(obj)}")
    labels = _string_map(obj.get("labels"), f"{where}.labels", required=True)
    if not labels:
        raise PayloadError(f"{where}.labels", "must have at least one label (alertname)")
    annotations = _string_map(obj.get("annotations"), f"{where}.annotations", required=False)
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
        fp = fingerprint(labels)  # from the labels as received, before any cut
    elif not isinstance(fp, str) or len(fp) > 64 or not fp.isalnum():
        raise PayloadError(f"{where}.fingerprint", "must be up to 64 letters and digits")
    url = obj.get("generatorURL") or ""
    if not isinstance(url, str):
        raise PayloadError(f"{where}.generatorURL", f"must be a string, got {_type(url)}")
    if "\x00" in url:
        raise PayloadError(f"{where}.generatorURL", "contains a NUL character")
    found: list[Truncation] = []
    labels, dropped_labels = _fit_map(labels, "label", fp, limits, found)
    annotations, dropped_notes = _fit_map(annotations, "annotation", fp, limits, found)
    url, url_cut = truncate(url, limits.max_label_value)
    if url_cut:
        found.append(Truncation(fp, "generator_url", "generatorURL", url_cut))
    if dropped_labels or dropped_notes:
        annotations[TRUNCATED_ANNOTATION] = "; ".join(
            f"{len(names)} {kind} dropped (over the limit of {limits.max_labels}): "
            + truncate(", ".join(names), 1000)[0]
            for kind, names in (("labels", dropped_labels), ("annotations", dropped_notes))
            if names
        )
    if cuts is not None:
        cuts.extend(found)
    return Alert(
        fingerprint=fp,
        status=status,
        labels=labels,
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=url,
    )


def parse_payload(
    body: Any,
    now: datetime,
    limits: AlertLimits = AlertLimits(),
    cuts: list[Truncation] | None = None,
) -> list[Alert]:
    """An Alertmanager envelope (`{"alerts": [...]}`), a bare alert, or a list of alerts,
    of any length (the body size bounds it). What was cut is appended to `cuts`."""
    if isinstance(body, dict) and "alerts" in body:
        items, where = body["alerts"], "alerts"
        if not isinstance(items, list):
            raise PayloadError("alerts", f"must be an array, got {_type(items)}")
    elif isinstance(body, list):
        items, where = body, ""
    elif isinstance(body, dict):
        return [parse_alert(body, "alert", now, limits, cuts)]
    else:
        raise PayloadError(
            "", f"expected an Alertmanager webhook, an alert or a list of alerts, got {_type(body)}"
        )
    if not items:
        raise PayloadError(where, "contains no alerts")
    return [parse_alert(a, f"{where}[{i}]", now, limits, cuts) for i, a in enumerate(items)]
