"""The Loki push API (`POST /loki/api/v1/push`): bodies to `logs` context records.

Pure functions, no HTTP: `decode_push` turns a body (JSON, or snappy-compressed protobuf,
either optionally gzip-encoded) into streams, `to_records` maps each entry of each stream
to a `NewContext("logs", ...)`. Both raise `LokiError` (a status and a plain message) for
anything a client got wrong; nothing else escapes for a client's mistake.

Mapping (docs/INGEST.md):
- service: the first of `service_labels` that the stream has (default service_name,
  service, app, job); none of them: "unknown".
- level: a `level`, `detected_level`, `severity` or `lvl` label, then the same names in
  the entry's structured metadata, then `level=...` (logfmt) or `"level": "..."` (JSON) in
  the line; normalised by `engine.adapters.volume.normalise_level` (a word it does not
  know is kept upper-cased), else "UNKNOWN".
- message: the line. attributes: the structured metadata, then every stream label but
  the one that named the service (a label wins over metadata of the same name).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import cramjam
from google.protobuf.message import DecodeError

from engine import finitejson
from engine.adapters import compression, loki_push_pb2
from engine.adapters.loki_labels import LABEL_NAME, LabelSyntaxError, parse_labels
from engine.adapters.volume import normalise_level
from engine.store.base import NewContext, new_context
from engine.timeutil import format_ts

DEFAULT_SERVICE_LABELS = ("service_name", "service", "app", "job")
LEVEL_KEYS = ("level", "detected_level", "severity", "lvl")
UNKNOWN_SERVICE = "unknown"
UNKNOWN_LEVEL = "UNKNOWN"
MAX_LINE = 64 * 1024  # characters of a line kept (engine.ingest.MAX_TEXT); longer is cut
MAX_VALUE = 64 * 1024  # a label or metadata value
MAX_SERVICE = 256  # engine.ingest.MAX_NAME
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
JSON_TYPES = frozenset({"application/json"})
PROTOBUF_TYPES = frozenset({"application/x-protobuf"})
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")
_LOGFMT_LEVEL = re.compile(r'(?:^|[\s,;])(?:level|lvl|severity)=(?:"([^"]*)"|([^\s",;]+))')
_JSON_LEVEL = re.compile(r'"(?:level|lvl|severity|log\.level)"\s*:\s*"([^"\\]*)"')


class LokiError(Exception):
    """A client mistake: the HTTP status, a plain message, and how many entries the
    rejected request held (0 when the body could not be read that far)."""

    def __init__(self, status: int, message: str, entries: int = 0) -> None:
        super().__init__(message)
        self.status, self.message, self.entries = status, message, entries


class Entry(NamedTuple):
    """One log line. A named tuple, not a dataclass: a push builds thousands."""

    ns: int  # Unix time in nanoseconds
    line: str
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Stream:
    labels: dict[str, str]
    entries: list[Entry] = field(default_factory=list)


# --- bodies -------------------------------------------------------------------------


def _too_large(limit: int) -> LokiError:
    return LokiError(413, str(compression.too_large(limit)))


def gunzip(data: bytes, limit: int) -> bytes:
    """engine.adapters.compression.gunzip, with the push API's error."""
    try:
        return compression.gunzip(data, limit)
    except compression.DecompressionError as exc:
        raise LokiError(exc.status, exc.message) from None


def snappy_length(data: bytes) -> int:
    """The decompressed length a snappy block states up front (a little-endian varint
    of at most 32 bits)."""
    value = shift = 0
    for i, byte in enumerate(data[:5]):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if value > 0xFFFFFFFF or (i == 4 and byte > 0x0F):
                break
            return value
        shift += 7
    raise LokiError(400, "the body is not snappy-compressed (no valid length header)")


def unsnappy(data: bytes, limit: int) -> bytes:
    """A snappy block (not the framed format), refused with 413 before anything is
    decompressed when the length it states is over `limit`."""
    if snappy_length(data) > limit:
        raise _too_large(limit)
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise LokiError(400, f"the body is not valid snappy: {exc}") from None


def _json_streams(data: bytes) -> list[Stream]:
    try:
        body = finitejson.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise LokiError(
            400, f"the body is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    except RecursionError:
        raise LokiError(400, "the JSON is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of too many digits
        raise LokiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("streams"), list):
        raise LokiError(400, 'the body must be a JSON object {"streams": [...]}')
    streams: list[Stream] = []
    for s, item in enumerate(body["streams"]):
        where = f"streams[{s}]"
        if not isinstance(item, dict):
            raise LokiError(400, f"{where} must be an object")
        labels = item.get("stream", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise LokiError(400, f"{where}.stream must be an object of string label values")
        values = item.get("values", [])
        if not isinstance(values, list):
            raise LokiError(400, f"{where}.values must be an array")
        entries = []
        for v, value in enumerate(values):
            # The usual [ts, line] is checked inline; anything else by _json_entry.
            if type(value) is list and len(value) == 2:
                ts, line = value
                if (
                    type(ts) is str
                    and type(line) is str
                    and ts.isascii()
                    and ts.isdigit()
                    and len(ts) <= 20
                ):
                    entries.append(Entry(int(ts), line))
                    continue
            entries.append(_json_entry(value, f"{where}.values[{v}]"))
        streams.append(Stream(dict(labels), entries))
    return streams


def _json_entry(value: Any, where: str) -> Entry:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise LokiError(400, f'{where} must be ["<unix ns>", "<line>"] or with a metadata object')
    ts, line = value[0], value[1]
    if not isinstance(ts, str) or not ts.isascii() or not ts.isdigit() or len(ts) > 20:
        raise LokiError(400, f"{where}[0] must be a string of Unix nanoseconds")
    if not isinstance(line, str):
        raise LokiError(400, f"{where}[1] (the line) must be a string")
    metadata: tuple[tuple[str, str], ...] = ()
    if len(value) == 3:
        meta = value[2]
        if not isinstance(meta, dict):
            raise LokiError(400, f"{where}[2] (structured metadata) must be an object")
        pairs = []
        for k, m in meta.items():
            if isinstance(m, bool) or not isinstance(m, str | int | float):
                raise LokiError(400, f"{where}[2].{k} must be a string")
            pairs.append((k, m if isinstance(m, str) else str(m)))
        metadata = tuple(pairs)
    return Entry(int(ts), line, metadata)


def _protobuf_streams(data: bytes) -> list[Stream]:
    try:
        request = loki_push_pb2.PushRequest.FromString(data)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise LokiError(400, f"the body is not a Loki PushRequest: {exc}") from None
    streams: list[Stream] = []
    for s, stream in enumerate(request.streams):
        try:
            labels = parse_labels(stream.labels)
        except LabelSyntaxError as exc:
            raise LokiError(400, f"streams[{s}].labels {stream.labels[:200]!r}: {exc}") from None
        entries = []
        for e, entry in enumerate(stream.entries):
            timestamp = entry.timestamp
            seconds, nanos = timestamp.seconds, timestamp.nanos
            if seconds < 0 or not 0 <= nanos < 1_000_000_000:
                raise LokiError(400, f"streams[{s}].entries[{e}].timestamp is not a valid time")
            pairs = entry.structuredMetadata
            metadata = tuple((p.name, p.value) for p in pairs) if pairs else ()
            entries.append(Entry(seconds * 1_000_000_000 + nanos, entry.line, metadata))
        streams.append(Stream(labels, entries))
    return streams


def decode_push(body: bytes, content_type: str, content_encoding: str, limit: int) -> list[Stream]:
    """The streams of a push body. `content_type` is the bare media type (lower case);
    `content_encoding` the header ("" when absent). Decompressed data is held to `limit`
    bytes (413 past it)."""
    encoding = content_encoding.strip().lower()
    if content_type not in JSON_TYPES | PROTOBUF_TYPES:
        raise LokiError(
            415,
            f"unsupported Content-Type {content_type!r}: send application/json or "
            "application/x-protobuf (snappy-compressed)",
        )
    if encoding == "gzip":
        body = gunzip(body, limit)
    elif encoding not in ("", "identity", "snappy") or (
        encoding == "snappy" and content_type in JSON_TYPES
    ):
        raise LokiError(
            415,
            f"unsupported Content-Encoding {content_encoding!r}: use gzip (or none); "
            "protobuf bodies are always snappy-compressed",
        )
    if not body:
        raise LokiError(400, "the request body is empty")
    if len(body) > limit:
        raise _too_large(limit)
    if content_type in JSON_TYPES:
        return _json_streams(body)
    return _protobuf_streams(unsnappy(body, limit))


# --- mapping ------------------------------------------------------------------------


def _clean(text: str, limit: int = MAX_VALUE) -> str:
    """Text as the store can hold it: NUL and lone surrogates become U+FFFD; cut at
    `limit` characters."""
    if len(text) > limit:
        text = text[:limit]
    if "\x00" in text or (not text.isascii() and _BAD_TEXT.search(text)):
        text = _BAD_TEXT.sub("\ufffd", text)
    return text


def level_from_line(line: str) -> str | None:
    """The level word a logfmt (`level=error`) or JSON (`"level":"error"`) line names."""
    found = _JSON_LEVEL.search(line) if "{" in line else None
    if found is not None:
        return found.group(1)
    found = _LOGFMT_LEVEL.search(line) if "=" in line else None
    if found is not None:
        return found.group(1) if found.group(1) is not None else found.group(2)
    return None


def level_of(labels: dict[str, str], metadata: dict[str, str], line: str) -> str:
    """The entry's level: the first candidate (labels, structured metadata, the line) that
    names a known level, as normalise_level words it; failing that the first candidate
    upper-cased; failing that UNKNOWN."""
    first: str | None = None
    for source in (labels, metadata):
        for key in LEVEL_KEYS:
            word = source.get(key)
            if word and word.strip():
                known = normalise_level(word)
                if known is not None:
                    return known
                first = first or word
    word = level_from_line(line)
    if word and word.strip():
        known = normalise_level(word)
        if known is not None:
            return known
        first = first or word
    return _clean(first.strip().upper(), MAX_SERVICE) if first else UNKNOWN_LEVEL


def service_of(labels: dict[str, str], service_labels: Sequence[str]) -> tuple[str, str | None]:
    """(service, the label it came from); ("unknown", None) when the stream has none."""
    for name in service_labels:
        value = labels.get(name, "").strip()
        if value:
            return value, name
    return UNKNOWN_SERVICE, None


def _time(ns: int, where: str, latest: datetime, entries: int) -> datetime:
    try:
        ts = datetime.fromtimestamp(ns // 1_000_000_000, UTC) + timedelta(
            microseconds=(ns % 1_000_000_000) // 1000
        )
    except (OverflowError, ValueError, OSError):
        raise LokiError(400, f"{where}: timestamp {ns} ns is out of range", entries) from None
    if ts > latest:
        raise LokiError(
            400,
            f"{where}: timestamp {format_ts(ts)} is in the future (later than {format_ts(latest)})",
            entries,
        )
    return ts


def count_entries(streams: Iterable[Stream]) -> int:
    return sum(len(s.entries) for s in streams)


def to_records(
    streams: list[Stream],
    now: datetime,
    *,
    service_labels: Sequence[str] = DEFAULT_SERVICE_LABELS,
    max_future: timedelta = timedelta(minutes=5),
    max_entries: int = 10_000,
) -> list[NewContext]:
    """One `logs` record per entry; LokiError (nothing mapped) when an entry is out of
    bounds: more than `max_entries` in all (413), a time past now + max_future (400), a
    service name over 256 characters (400). The records of a stream whose entries have
    no structured metadata share one `attributes` dict (the store encodes it once):
    treat the records as read-only."""
    total = count_entries(streams)
    if total > max_entries:
        raise LokiError(
            413, f"the push has {total} log lines; the limit is {max_entries} per request", total
        )
    latest = now + max_future
    latest_us = (latest - _EPOCH) // _US
    records: list[NewContext] = []
    for s, stream in enumerate(streams):
        labels = {_clean(k, MAX_SERVICE): _clean(v) for k, v in stream.labels.items()}
        service, used = service_of(labels, service_labels)
        if len(service) > MAX_SERVICE:
            raise LokiError(
                400,
                f"streams[{s}]: the service label {used} is longer than {MAX_SERVICE} characters",
                total,
            )
        stream_attrs = {k: v for k, v in labels.items() if k != used}
        # A level label the volume filter can rank wins over the entry (level_of): the
        # whole stream has it.
        stream_level = _known_level(labels)
        for e, entry in enumerate(stream.entries):
            ns, line, pairs = entry
            if ns // 1000 <= latest_us:
                ts = datetime.fromtimestamp(ns // 1000 / 1e6, UTC)  # exact to the microsecond
            else:
                ts = _time(ns, f"streams[{s}] entry {e}", latest, total)  # raises
            if len(line) > MAX_LINE or "\x00" in line or not line.isascii():
                line = _clean(line, MAX_LINE)
            if pairs:
                metadata = {_clean(k, MAX_SERVICE): _clean(v) for k, v in pairs}
                level = stream_level or level_of(labels, metadata, line)
                attributes = {**metadata, **stream_attrs}
            else:
                level = stream_level or level_of(labels, {}, line)
                attributes = stream_attrs  # shared by the stream's records: encoded once
            fields: dict[str, Any] = {"level": level, "message": line}
            if attributes:
                fields["attributes"] = attributes
            records.append(new_context("logs", service, ts, fields))
    return records


def _known_level(labels: dict[str, str]) -> str | None:
    """The level a stream's labels name, when it is one normalise_level knows."""
    for key in LEVEL_KEYS:
        word = labels.get(key)
        if word and word.strip():
            known = normalise_level(word)
            if known is not None:
                return known
    return None


# --- the serve option ---------------------------------------------------------------


def parse_service_labels(text: str) -> tuple[str, ...]:
    """`--loki-service-labels`: comma-separated label names, in the order tried."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if not LABEL_NAME.fullmatch(n)]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of label names"
            + (f" ({', '.join(map(repr, bad))} is not one)" if bad else "")
        )
    return names


def add_loki_arguments(p: argparse.ArgumentParser, env_prefix: str) -> None:
    p.add_argument(
        "--loki-service-labels",
        type=parse_service_labels,
        # A string default goes through `type` too: a bad variable is a usage error.
        default=os.environ.get(
            env_prefix + "LOKI_SERVICE_LABELS", ",".join(DEFAULT_SERVICE_LABELS)
        ),
        help="stream labels that name the service of a Loki push, first match wins "
        f"(default {','.join(DEFAULT_SERVICE_LABELS)}) [env {env_prefix}LOKI_SERVICE_LABELS]",
    )
