"""Backend-neutral encoding of domain objects into column values and back.

SQLite and PostgreSQL store the same things the same way (epoch-second timestamps, JSON
text for documents), so both backends share these helpers: a record written by one
decodes identically in the other, and the contract tests hold for both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, overload

from engine.model import CONTEXT_KINDS, Alert, Finding
from engine.timeutil import format_ts, is_go_zero, parse_ts

# Typed columns per context kind: (field name, Python type the column returns exactly).
# A value goes into its column only when the column gives it back unchanged; anything
# else (other keys, None, an int commit from YAML, ...) lives in the `attributes` JSON,
# which wins on read. So `fields` round-trips exactly while the usual fields stay
# queryable with plain SQL.
TYPED_FIELDS: dict[str, tuple[tuple[str, type], ...]] = {
    "deploys": (("commit", str), ("author", str)),
    "logs": (("level", str), ("message", str)),
    "traces": (("trace_id", str), ("duration_ms", float)),
}
assert tuple(TYPED_FIELDS) == CONTEXT_KINDS
assert all(len(typed) == 2 for typed in TYPED_FIELDS.values())  # split_fields' fast path
_NAMES = {kind: frozenset(name for name, _ in typed) for kind, typed in TYPED_FIELDS.items()}


def check_kind(kind: str) -> str:
    if kind not in TYPED_FIELDS:
        raise ValueError(
            f"unknown context kind {kind!r} (expected one of {', '.join(CONTEXT_KINDS)})"
        )
    return kind


def aware(ts: datetime) -> datetime:
    """A naive datetime is taken to be UTC, never local time."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def epoch(ts: datetime) -> float:
    """Aware datetime -> epoch seconds. A naive datetime is taken to be UTC, never local time."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


@overload
def from_epoch(seconds: float) -> datetime: ...
@overload
def from_epoch(seconds: None) -> None: ...
@overload
def from_epoch(seconds: float | None) -> datetime | None: ...
def from_epoch(seconds: float | None) -> datetime | None:
    # A double holds epoch seconds to ~0.2 µs, so microsecond datetimes round-trip exactly.
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def real_end(ts: datetime | None) -> datetime | None:
    """Alertmanager's Go zero time means "no end"."""
    return None if ts is None or is_go_zero(ts) else ts


# Compact, sorted keys, ASCII: the text every document is stored as.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
_make_c_encoder = getattr(json.encoder, "c_make_encoder", None)


def _encode(value: Any) -> str:
    """_ENCODER.encode(value), the same text and errors, without the Python layers
    JSONEncoder puts around its C encoder on every call (a quarter of the cost of
    encoding a span's fields; measured by `python -m bench`, docs/PERFORMANCE.md)."""
    if _make_c_encoder is None:
        return _ENCODER.encode(value)
    encoder = _make_c_encoder(
        {},
        _ENCODER.default,
        json.encoder.encode_basestring_ascii,
        None,
        ":",
        ",",
        True,
        False,
        True,
    )
    return "".join(encoder(value, 0))


def dumps(value: Any) -> str | None:
    return None if value is None else _encode(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# --- context ----------------------------------------------------------------


def split_fields(kind: str, fields: Mapping[str, Any]) -> tuple[list[Any], str | None]:
    """`fields` -> (typed column values in TYPED_FIELDS order, attributes JSON or None).

    On the add_context hot path (benchmarked against raw executemany): keep it lean.
    """
    (a, type_a), (b, type_b) = TYPED_FIELDS[kind]
    if len(fields) == 2 and type(fields.get(a)) is type_a and type(fields.get(b)) is type_b:
        return [fields[a], fields[b]], None  # the common case: exactly the typed fields
    columns: list[Any] = []
    extra: dict[str, Any] | None = None
    present = 0  # how many typed names `fields` has: any other key goes to attributes
    for name, typ in TYPED_FIELDS[kind]:
        if name not in fields:
            columns.append(None)
            continue
        present += 1
        value = fields[name]
        if type(value) is typ:
            columns.append(value)
            continue
        if extra is None:
            extra = {}
        extra[name] = value
        # An int duration is queryable as a REAL and kept exactly in attributes.
        columns.append(float(value) if typ is float and type(value) is int else None)
    if len(fields) > present:
        names = _NAMES[kind]
        if extra is None:
            extra = {}
        for key, value in fields.items():
            if key not in names:
                extra[key] = value
    return columns, None if extra is None else _encode(extra)


class Splitter:
    """split_fields for the records of one batch, with two shortcuts for what the
    collector adapters send (same output as split_fields, byte for byte):
    - the typed fields plus other keys: the others are encoded without the general loop;
    - the typed fields plus `attributes` only, where records share one attributes object
      (the labels of a Loki stream): its JSON is encoded once per batch. Valid while the
      records are alive and unchanged, that is for one add_context call.
    """

    __slots__ = ("_memo",)

    def __init__(self) -> None:
        self._memo: dict[int, str] = {}

    def __call__(self, kind: str, fields: Mapping[str, Any]) -> tuple[list[Any], str | None]:
        (a, type_a), (b, type_b) = TYPED_FIELDS[kind]
        if type(fields.get(a)) is not type_a or type(fields.get(b)) is not type_b:
            return split_fields(kind, fields)
        columns = [fields[a], fields[b]]
        if len(fields) == 2:
            return columns, None
        if len(fields) == 3 and "attributes" in fields:
            attributes = fields["attributes"]
            key = id(attributes)
            text = self._memo.get(key)
            if text is None:
                text = self._memo[key] = '{"attributes":' + _encode(attributes) + "}"
            return columns, text
        return columns, _encode({k: v for k, v in fields.items() if k != a and k != b})


def join_fields(kind: str, columns: tuple[Any, ...], attributes: str | None) -> dict[str, Any]:
    """Inverse of split_fields."""
    fields: dict[str, Any] = {}
    for (name, _), value in zip(TYPED_FIELDS[kind], columns, strict=True):
        if value is not None:
            fields[name] = value
    if attributes:
        fields.update(json.loads(attributes))
    return fields


# --- incidents --------------------------------------------------------------


def alert_to_json(alert: Alert) -> str:
    return _encode(alert.as_scope())


def alert_from_json(text: str) -> Alert:
    d = json.loads(text)
    return Alert(
        fingerprint=d["fingerprint"],
        status=d["status"],
        labels=d["labels"],
        annotations=d["annotations"],
        starts_at=parse_ts(d["startsAt"]),
        ends_at=parse_ts(d["endsAt"]) if d.get("endsAt") else None,
        generator_url=d.get("generatorURL", ""),
    )


def findings_to_json(findings: tuple[Finding, ...]) -> str:
    return _encode([f.to_dict() for f in findings])


def findings_from_json(text: str | None) -> tuple[Finding, ...]:
    return tuple(Finding.from_dict(d) for d in json.loads(text or "[]"))


def resolution(*, auto: bool, note: str | None, at: datetime) -> dict[str, Any]:
    return {"auto": auto, "note": note, "at": format_ts(at)}


def column_names(kind: str) -> list[str]:
    """The typed columns of a context kind, quoted ("commit" is a keyword)."""
    return [f'"{name}"' for name, _ in TYPED_FIELDS[kind]]
