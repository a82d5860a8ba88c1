"""The Loki push API: the label-string parser, the mapping to `logs` records, and
`POST /loki/api/v1/push` with bodies built the way Promtail, Alloy and Vector build them."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cramjam
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.adapters import loki_push_pb2 as pb
from engine.adapters.loki import (
    DEFAULT_SERVICE_LABELS,
    Entry,
    LabelSyntaxError,
    LokiError,
    Stream,
    decode_push,
    gunzip,
    level_of,
    parse_labels,
    service_of,
    snappy_length,
    to_records,
)
from engine.server.app import AppState
from engine.testing import AppClient

ROOT = Path(__file__).resolve().parents[2]
PUSH = "/loki/api/v1/push"
TOKENS = {"ingest": "ingest-0123456789abcdef-tok", "read": "read-0123456789abcdef-token"}
MakeApp = Callable[..., tuple[AppState, AppClient]]


# --- the label string ---------------------------------------------------------------


def test_labels_plain() -> None:
    assert parse_labels('{service_name="api", level="error"}') == {
        "service_name": "api",
        "level": "error",
    }
    assert parse_labels("{}") == {}
    assert parse_labels('  { a = "1" ,b="2", }  ') == {"a": "1", "b": "2"}
    assert parse_labels('{a=""}') == {"a": ""}


def test_labels_escapes_as_go_quotes_them() -> None:
    # strconv.Quote, which Promtail's and Alloy's label String() uses.
    assert parse_labels(r'{a="say \"hi\"", b="back\\slash", c="l1\nl2\ttab"}') == {
        "a": 'say "hi"',
        "b": "back\\slash",
        "c": "l1\nl2\ttab",
    }
    assert parse_labels(r'{a="\xc3\xa9", b="\u00e9\U0001F600", c="\303\251", d="\a\b\f\r\v"}') == {
        "a": "é",
        "b": "é\U0001f600",
        "c": "é",
        "d": "\a\b\f\r\v",
    }
    assert parse_labels(r'{a="\xff"}') == {"a": "\ufffd"}  # an invalid byte stays visible
    assert parse_labels("{a='it\\'s', b=`raw \\n`}") == {"a": "it's", "b": "raw \\n"}
    assert parse_labels('{a="{b=\\"c\\"}, d"}') == {"a": '{b="c"}, d'}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a",
        "{",
        "{a}",
        "{a=b}",
        '{a="b"',
        '{a="b}',
        '{a="b" c="d"}',
        '{a="b",,c="d"}',
        '{a="b",a="c"}',
        '{1a="b"}',
        '{a-b="c"}',
        '{"a"="b"}',
        '{a="\\q"}',
        '{a="\\x4"}',
        '{a="\\xzz"}',
        '{a="\\9"}',
        '{a="\\ud800"}',
        '{a="\\U00110000"}',
        '{a="\\u+0e9"}',
        '{a="b"} x',
        '{a="line\nbreak"}',
        '{a="b\\',
        "{a=`b}",
        'a="b"',
    ],
)
def test_labels_malformed(text: str) -> None:
    with pytest.raises(LabelSyntaxError):
        parse_labels(text)


def _go_quote(value: str) -> str:
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


_NAMES = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
_VALUES = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@given(st.dictionaries(_NAMES, _VALUES, max_size=5))
def test_labels_round_trip(labels: dict[str, str]) -> None:
    text = "{" + ", ".join(f"{k}={_go_quote(v)}" for k, v in labels.items()) + "}"
    assert parse_labels(text) == labels


# --- mapping ------------------------------------------------------------------------


def test_service_from_labels_in_order() -> None:
    assert service_of({"job": "j", "app": "a"}, DEFAULT_SERVICE_LABELS) == ("a", "app")
    assert service_of({"service_name": "s", "service": "x"}, DEFAULT_SERVICE_LABELS)[0] == "s"
    assert service_of({"service_name": "  ", "job": "j"}, DEFAULT_SERVICE_LABELS)[0] == "j"
    assert service_of({"pod": "p"}, DEFAULT_SERVICE_LABELS) == ("unknown", None)
    assert service_of({"app": "a", "team": "t"}, ("team",)) == ("t", "team")


@pytest.mark.parametrize(
    ("labels", "metadata", "line", "level"),
    [
        ({"level": "error"}, {}, "level=info", "ERROR"),
        ({"detected_level": "warning"}, {}, "", "WARN"),
        ({"severity": "critical"}, {}, "", "FATAL"),
        ({"lvl": "dbg"}, {}, "", "DEBUG"),
        ({}, {"level": "err"}, "level=info", "ERROR"),
        ({}, {}, "ts=1 level=error msg=boom", "ERROR"),
        ({}, {}, 'ts=1 level="warn" msg=x', "WARN"),
        ({}, {}, 'msg="x" lvl=fatal', "FATAL"),
        ({}, {}, '{"ts": 1, "level": "error", "msg": "boom"}', "ERROR"),
        ({}, {}, '{"severity":"INFO"}', "INFO"),
        ({}, {}, "plain text, no level", "UNKNOWN"),
        ({}, {}, "devel=error", "UNKNOWN"),
        ({"level": "verbose"}, {}, "", "VERBOSE"),  # not a known word: kept, upper-cased
        ({"level": "verbose"}, {}, "level=error", "ERROR"),  # a known word wins
    ],
)
def test_level(labels: dict, metadata: dict, line: str, level: str) -> None:
    assert level_of(labels, metadata, line) == level


NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
NOW_NS = int(NOW.timestamp()) * 10**9


def test_entries_become_logs_records() -> None:
    streams = [
        Stream(
            {"service_name": "api", "level": "error", "pod": "api-7f9c"},
            [
                Entry(NOW_NS - 5 * 10**9 + 123_456_789, "upstream timeout"),
                Entry(NOW_NS, "again", (("trace_id", "abc"), ("pod", "meta-pod"))),
            ],
        ),
        Stream({"host": "h1"}, [Entry(NOW_NS, "level=warn nobody owns me")]),
    ]
    records = to_records(streams, NOW)
    assert [(r.kind, r.service) for r in records] == [
        ("logs", "api"),
        ("logs", "api"),
        ("logs", "unknown"),
    ]
    first, second, third = records
    assert first.ts == NOW - timedelta(seconds=5) + timedelta(microseconds=123_456)
    assert first.fields == {
        "level": "ERROR",
        "message": "upstream timeout",
        "attributes": {"level": "error", "pod": "api-7f9c"},
    }
    # structured metadata is kept; a stream label wins over metadata of the same name
    assert second.fields["attributes"] == {"trace_id": "abc", "pod": "api-7f9c", "level": "error"}
    assert third.fields == {
        "level": "WARN",
        "message": "level=warn nobody owns me",
        "attributes": {"host": "h1"},
    }


def test_mapping_bounds() -> None:
    future = [Stream({"app": "a"}, [Entry(NOW_NS + 3600 * 10**9, "x")])]
    with pytest.raises(LokiError) as exc:
        to_records(future, NOW)
    assert exc.value.status == 400 and "future" in exc.value.message
    many = [Stream({"app": "a"}, [Entry(NOW_NS, "x")] * 11)]
    with pytest.raises(LokiError) as exc:
        to_records(many, NOW, max_entries=10)
    assert exc.value.status == 413 and exc.value.entries == 11
    with pytest.raises(LokiError):
        to_records([Stream({"app": "a" * 300}, [Entry(NOW_NS, "x")])], NOW)
    with pytest.raises(LokiError):
        to_records([Stream({"app": "a"}, [Entry(10**21, "x")])], NOW)  # past year 9999
    # NUL and lone surrogates cannot be stored: replaced; a huge line is cut
    (r,) = to_records([Stream({"app": "a\x00"}, [Entry(NOW_NS, "x\x00\ud800" + "y" * 70000)])], NOW)
    assert r.service == "a\ufffd" and r.fields["message"].startswith("x\ufffd\ufffdy")
    assert len(r.fields["message"]) == 64 * 1024


# --- bodies -------------------------------------------------------------------------


def promtail_body(streams: list[tuple[str, list[tuple[int, str, dict[str, str]]]]]) -> bytes:
    """A PushRequest serialized and snappy-block-compressed, as Promtail and Alloy send it."""
    request = pb.PushRequest()
    for labels, entries in streams:
        stream = request.streams.add(labels=labels)
        for ns, line, metadata in entries:
            entry = stream.entries.add(line=line)
            entry.timestamp.FromNanoseconds(ns)
            for name, value in metadata.items():
                entry.structuredMetadata.add(name=name, value=value)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


PROTOBUF = {"Content-Type": "application/x-protobuf"}  # Promtail sends no Content-Encoding


def test_decode_protobuf_and_json() -> None:
    body = promtail_body([('{app="a"}', [(NOW_NS + 7, "boom", {"k": "v"})])])
    (stream,) = decode_push(body, "application/x-protobuf", "", 1 << 20)
    assert stream == Stream({"app": "a"}, [Entry(NOW_NS + 7, "boom", (("k", "v"),))])
    assert decode_push(body, "application/x-protobuf", "snappy", 1 << 20) == [stream]
    doc = {"streams": [{"stream": {"app": "a"}, "values": [[str(NOW_NS + 7), "boom", {"k": "v"}]]}]}
    raw = json.dumps(doc).encode()
    assert decode_push(raw, "application/json", "", 1 << 20) == [stream]
    assert decode_push(gzip.compress(raw), "application/json", "gzip", 1 << 20) == [stream]


def test_snappy_length_is_read_before_decompressing() -> None:
    assert snappy_length(bytes(cramjam.snappy.compress_raw(b"x" * 300))) == 300
    claim = b"\xff\xff\xff\xff\x0f" + b"\x00" * 10  # says 4 GiB
    with pytest.raises(LokiError) as exc:
        decode_push(claim, "application/x-protobuf", "", 1 << 20)
    assert exc.value.status == 413
    for bad in (b"", b"\xff\xff\xff\xff\xff\xff", b"\x80"):
        with pytest.raises(LokiError):
            snappy_length(bad)


def test_gunzip_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * (64 << 20))  # 64 MiB of zeros in ~64 KiB
    with pytest.raises(LokiError) as exc:
        gunzip(bomb, 1 << 20)
    assert exc.value.status == 413
    assert gunzip(gzip.compress(b"a") + gzip.compress(b"b"), 10) == b"ab"  # two members
    for bad in (b"not gzip", gzip.compress(b"abc")[:-5]):
        with pytest.raises(LokiError) as exc:
            gunzip(bad, 100)
        assert exc.value.status == 400


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {},
        {"streams": {}},
        {"streams": [1]},
        {"streams": [{"stream": {"a": 1}, "values": []}]},
        {"streams": [{"stream": {}, "values": {}}]},
        {"streams": [{"stream": {}, "values": [["1", "x", {}, 4]]}]},
        {"streams": [{"stream": {}, "values": [[1, "x"]]}]},
        {"streams": [{"stream": {}, "values": [["-1", "x"]]}]},
        {"streams": [{"stream": {}, "values": [["1.5", "x"]]}]},
        {"streams": [{"stream": {}, "values": [["1", 2]]}]},
        {"streams": [{"stream": {}, "values": [["1", "x", []]]}]},
        {"streams": [{"stream": {}, "values": [["1", "x", {"k": {"n": 1}}]]}]},
    ],
)
def test_json_shape_errors(doc: Any) -> None:
    with pytest.raises(LokiError) as exc:
        decode_push(json.dumps(doc).encode(), "application/json", "", 1 << 20)
    assert exc.value.status == 400


# --- the endpoint -------------------------------------------------------------------


def _logs(state: AppState, service: str | None = None) -> list[Any]:
    now = datetime.now(UTC)
    return state.store.query_context(
        "logs", start=now - timedelta(days=1), end=now + timedelta(days=1), service=service
    )


def _metric(client: AppClient, outcome: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        name, _, rest = line.partition("{")
        labels = ('source="loki"', f'outcome="{outcome}"')
        if name == "incident_pilot_ingest_records_total" and all(x in rest for x in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_json_push_is_stored_and_filtered(make_app: MakeApp) -> None:
    state, client = make_app()
    now = time.time_ns()
    doc = {
        "streams": [
            {
                "stream": {"service_name": "checkout-api", "level": "error", "pod": "p1"},
                "values": [[str(now), "upstream timeout"], [str(now), "again", {"trace_id": "t1"}]],
            },
            {"stream": {"service_name": "checkout-api"}, "values": [[str(now), "level=info ok"]]},
        ]
    }
    r = client.post(PUSH, json=doc)
    assert r.status_code == 204, r.text
    assert r.content == b""
    records = _logs(state, "checkout-api")
    assert sorted(rec.fields["message"] for rec in records) == ["again", "upstream timeout"]
    again = next(rec for rec in records if rec.fields["message"] == "again")
    assert again.fields["level"] == "ERROR"
    assert again.fields["attributes"] == {"trace_id": "t1", "level": "error", "pod": "p1"}
    assert _metric(client, "stored") == 2 and _metric(client, "filtered") == 1
    assert (
        'incident_pilot_context_records_ingested_total{kind="logs"} 2.0'
        in client.get("/metrics").text
    )


def test_protobuf_push_as_promtail_sends_it(make_app: MakeApp) -> None:
    state, client = make_app()
    now = time.time_ns()
    body = promtail_body(
        [
            ('{job="varlogs", service_name="payments", level="error"}', [(now, "db down", {})]),
            ('{app="payments-worker"}', [(now - 10**9, 'level=warn msg="slow"', {"k": "v"})]),
        ]
    )
    r = client.post(PUSH, content=body, headers={**PROTOBUF, "User-Agent": "promtail/3.0"})
    assert r.status_code == 204, r.text
    (down,) = _logs(state, "payments")
    assert down.fields == {
        "level": "ERROR",
        "message": "db down",
        "attributes": {"job": "varlogs", "level": "error"},
    }
    (slow,) = _logs(state, "payments-worker")
    assert slow.fields["level"] == "WARN" and slow.fields["attributes"] == {"k": "v"}


def test_gzip_json_push(make_app: MakeApp) -> None:
    state, client = make_app()
    doc = {
        "streams": [{"stream": {"app": "a"}, "values": [[str(time.time_ns()), "level=error x"]]}]
    }
    r = client.post(
        PUSH,
        content=gzip.compress(json.dumps(doc).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 204, r.text
    assert len(_logs(state, "a")) == 1


def test_a_thousand_line_push_is_accepted(make_app: MakeApp) -> None:
    state, client = make_app()
    now = time.time_ns()
    body = promtail_body(
        [('{app="big"}', [(now - i, f"level=error n={i}", {}) for i in range(1000)])]
    )
    assert client.post(PUSH, content=body, headers=PROTOBUF).status_code == 204
    assert len(_logs(state, "big")) == 1000


def test_the_service_labels_are_configurable(make_app: MakeApp) -> None:
    state, client = make_app(loki_service_labels=("team", "app"))
    doc = {
        "streams": [{"stream": {"app": "a", "team": "t"}, "values": [[str(time.time_ns()), "x"]]}]
    }
    assert client.post(PUSH, json=doc).status_code == 204
    (record,) = _logs(state)
    assert record.service == "t" and record.fields["attributes"] == {"app": "a"}


def _rejected(client: AppClient, state: AppState, status: int, **request: Any) -> str:
    r = client.post(PUSH, **request)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert _logs(state) == []
    return r.text


def test_bombs_are_refused_and_nothing_is_stored(make_app: MakeApp) -> None:
    state, client = make_app(max_body=1 << 20)
    good = [(time.time_ns(), "level=error kept?", {})]
    # a real snappy block of 4 MiB: small on the wire, too large once decompressed
    request = pb.PushRequest()
    request.streams.add(labels='{app="a"}').entries.add(line="x" * (4 << 20))
    big = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    assert len(big) < 1 << 20
    text = _rejected(client, state, 413, content=big, headers=PROTOBUF)
    assert "decompressed" in text
    # a snappy header that claims 4 GiB in front of a valid small body
    body = promtail_body([('{app="a"}', good)])
    claim = b"\xff\xff\xff\xff\x0f" + body[1:]
    _rejected(client, state, 413, content=claim, headers=PROTOBUF)
    # a gzip bomb
    bomb = gzip.compress(b"{" + b" " * (32 << 20) + b"}")
    assert len(bomb) < 1 << 20
    _rejected(
        client,
        state,
        413,
        content=bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    # too large on the wire
    _rejected(client, state, 413, content=b"x" * ((1 << 20) + 1), headers=PROTOBUF)
    assert _metric(client, "stored") == 0


def test_garbage_gets_a_plain_400(make_app: MakeApp) -> None:
    state, client = make_app()
    now = time.time_ns()
    for content, headers in [
        (b"\x00\x01garbage", PROTOBUF),
        (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff\xff")), PROTOBUF),
        (promtail_body([("service_name=api", [(now, "x", {})])]), PROTOBUF),
        (b"{not json", {"Content-Type": "application/json"}),
        (b"\xff\xfe", {"Content-Type": "application/json"}),
        (b"", PROTOBUF),
        (b"[" * 100_000, {"Content-Type": "application/json"}),
        (b"not gzip", {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
    ]:
        text = _rejected(client, state, 400, content=content, headers=headers)
        assert text.strip() and not text.startswith("{")


def test_one_bad_entry_rejects_the_whole_push(make_app: MakeApp) -> None:
    state, client = make_app()
    now = time.time_ns()
    body = promtail_body(
        [
            ('{app="a"}', [(now, "level=error ok", {})]),
            ('{app="b"}', [(now + 3600 * 10**9, "x", {})]),
        ]
    )
    assert "future" in _rejected(client, state, 400, content=body, headers=PROTOBUF)
    assert _metric(client, "rejected") == 2


def test_unknown_types_and_encodings_get_415(make_app: MakeApp) -> None:
    state, client = make_app()
    for headers in [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/xml"},
        {},
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"},
        {"Content-Type": "application/json", "Content-Encoding": "snappy"},
    ]:
        _rejected(client, state, 415, content=b'{"streams": []}', headers=headers)


def test_too_many_lines_get_413(make_app: MakeApp) -> None:
    state, client = make_app()
    state.context_limits = type(state.context_limits)(max_records=5)
    body = promtail_body([('{app="a"}', [(time.time_ns(), "x", {})] * 6)])
    _rejected(client, state, 413, content=body, headers=PROTOBUF)


def test_push_needs_an_ingest_token(make_app: MakeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCIDENT_PILOT_TOKENS", ",".join(f"{s}:{t}" for s, t in TOKENS.items()))
    state, client = make_app()
    body = promtail_body([('{app="a"}', [(time.time_ns(), "level=error x", {})])])
    assert client.post(PUSH, content=body, headers=PROTOBUF).status_code == 401
    read = {**PROTOBUF, "Authorization": f"Bearer {TOKENS['read']}"}
    assert client.post(PUSH, content=body, headers=read).status_code == 403
    ingest = {**PROTOBUF, "Authorization": f"Bearer {TOKENS['ingest']}"}
    assert client.post(PUSH, content=body, headers=ingest).status_code == 204
    assert len(_logs(state, "a")) == 1


def test_the_serve_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.cli import build_parser
    from engine.server.settings import settings_from_args

    def parse(*argv: str) -> tuple[str, ...]:
        args = build_parser().parse_args(["serve", *argv])
        return settings_from_args(args, []).loki_service_labels

    assert parse() == DEFAULT_SERVICE_LABELS
    assert parse("--loki-service-labels", "app, job") == ("app", "job")
    monkeypatch.setenv("INCIDENT_PILOT_LOKI_SERVICE_LABELS", "team")
    assert parse() == ("team",)
    with pytest.raises(SystemExit):
        parse("--loki-service-labels", "not-a-label")
    with pytest.raises(SystemExit):
        parse("--loki-service-labels", " , ")


def test_the_committed_module_matches_the_proto(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    src = ROOT / "engine" / "adapters"
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/timestamp.proto
    argv = ["protoc", f"-I{src}", f"-I{include}", f"--python_out={tmp_path}", "loki_push.proto"]
    assert protoc.main(argv) == 0
    built = (tmp_path / "loki_push_pb2.py").read_text()
    committed = (src / "loki_push_pb2.py").read_text()
    assert built == committed, "regenerate engine/adapters/loki_push_pb2.py (see loki_push.proto)"


def test_promtail_style_wire_format_is_logproto() -> None:
    """Field numbers as in Loki's push.proto: streams=1; labels=1, entries=2; timestamp=1,
    line=2, structuredMetadata=3 (hand-encoded bytes decode to the same message)."""
    ts = b"\x08" + bytes([0x80, 0xA8, 0xBE, 0xC8, 0x06])  # seconds (varint)
    meta = b"\x0a\x01k\x12\x01v"
    entry = b"\x0a" + bytes([len(ts)]) + ts + b"\x12\x04boom" + b"\x1a" + bytes([len(meta)]) + meta
    stream = b'\x0a\x09{app="a"}' + b"\x12" + bytes([len(entry)]) + entry
    wire = b"\x0a" + bytes([len(stream)]) + stream
    request = pb.PushRequest.FromString(wire)
    assert request.streams[0].labels == '{app="a"}'
    assert request.streams[0].entries[0].line == "boom"
    assert request.streams[0].entries[0].structuredMetadata[0].name == "k"
