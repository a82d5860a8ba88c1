"""Bad input: every malformed request gets a 4xx JSON error naming the problem (and the
field, when there is one), never a 500, and leaves the stored data as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from engine.narrate import StdoutReporter
from engine.paths import rules_dir
from engine.server.settings import ServeSettings
from engine.testing import AppClient, make_alert, make_webhook, open_app, printed, ts
from tests.store import pg

JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}
MIB = 1024 * 1024
LOG = {"service": "api-gateway", "level": "ERROR", "message": "upstream timeout"}
TRACE = {"trace_id": "t1", "service": "api-gateway", "duration_ms": 12}
DEPLOY = {"service": "api-gateway", "commit": "a39bf2c", "author": "alice"}


def j(value: Any) -> bytes:
    return json.dumps(value).encode()


# (id, method, path, headers, body, status, field or None, words expected in the error)
# fmt: off
CASES: list[tuple[str, str, str, dict[str, str], bytes, int, str | None, str]] = [
    # malformed JSON
    ("malformed-alert", "POST", "/alerts", JSON, b'{"alerts": [', 400, None, "malformed JSON at line 1"),
    ("malformed-context", "POST", "/context/logs", JSON, b'{"service": "x",}', 400, None, "malformed JSON"),
    ("trailing-garbage", "POST", "/alerts", JSON, j(make_alert()) + b" x", 400, None, "malformed JSON"),
    ("single-quotes", "POST", "/context/logs", JSON, b"{'service': 'x'}", 400, None, "malformed JSON"),
    ("bom", "POST", "/alerts", JSON, b"\xef\xbb\xbf" + j(make_alert()), 400, None, "BOM"),
    ("ndjson-bad-line", "POST", "/context/logs", NDJSON, j(LOG) + b"\n{oops\n", 400, None, "line 2"),
    ("nan", "POST", "/context/traces", JSON, b'{"trace_id":"t","service":"s","duration_ms":NaN}', 400, None, "NaN"),
    ("infinity", "POST", "/context/traces", JSON, b'{"trace_id":"t","service":"s","duration_ms":-Infinity}', 400, None, "-Infinity"),
    ("huge-integer", "POST", "/context/traces", JSON, b'{"trace_id":"t","service":"s","duration_ms":' + b"9" * 5000 + b"}", 400, None, "invalid JSON"),
    ("overflow-float", "POST", "/context/traces", JSON, b'{"trace_id":"t","service":"s","duration_ms":1e400}', 400, None, "1e400 is out of range: numbers must be finite"),
    ("overflow-float-nested", "POST", "/context/logs", JSON, b'{"service":"s","message":"m","x":[[1,[-1e999]]]}', 400, None, "-1e999 is out of range"),
    ("overflow-float-alert", "POST", "/alerts", JSON, b'{"labels":{"alertname":"a"},"x":1e999}', 400, None, "1e999 is out of range"),
    ("overflow-float-envelope", "POST", "/alerts", JSON, b'{"alerts":[{"labels":{"alertname":"a"},"v":[-1e999]}]}', 400, None, "finite"),
    ("overflow-float-ndjson", "POST", "/context/logs", NDJSON, j(LOG) + b'\n{"service":"s","message":"m","v":1e400}\n', 400, None, "line 2: the number 1e400"),
    ("nan-nested-deploy", "POST", "/context/deploys", JSON, b'{"service":"s","commit":"c","meta":{"a":[NaN]}}', 400, None, "NaN is not valid JSON"),
    ("infinity-resolve", "POST", "/api/incidents/inc-1/resolve", JSON, b'{"note":"x","n":Infinity}', 400, None, "Infinity"),
    # content type
    ("xml-alert", "POST", "/alerts", {"content-type": "application/xml"}, b"<alert/>", 415, None, "application/json"),
    ("xml-context", "POST", "/context/deploys", {"content-type": "application/xml"}, j(DEPLOY), 415, None, "application/x-ndjson"),
    ("multipart", "POST", "/alerts", {"content-type": "multipart/form-data; boundary=x"}, j(make_alert()), 415, None, "Content-Type"),
    ("xml-resolve", "POST", "/api/incidents/inc-1/resolve", {"content-type": "text/xml"}, b"<note/>", 415, None, "Content-Type"),
    # wrong types
    ("labels-string", "POST", "/alerts", JSON, j({"labels": "x"}), 400, "alert.labels", "must be an object"),
    ("label-number", "POST", "/alerts", JSON, j(make_webhook({"labels": {"alertname": 1}})), 400, "alerts[0].labels.alertname", "must be a string"),
    ("annotation-list", "POST", "/alerts", JSON, j({"labels": {"alertname": "a"}, "annotations": {"s": []}}), 400, "alert.annotations.s", "must be a string"),
    ("alerts-object", "POST", "/alerts", JSON, j({"alerts": {"labels": {}}}), 400, "alerts", "must be an array"),
    ("alert-number", "POST", "/alerts", JSON, b"[1]", 400, "[0]", "must be an alert object"),
    ("alert-string", "POST", "/alerts", JSON, b'"firing"', 400, None, "got a string"),
    ("alert-null", "POST", "/alerts", JSON, b"null", 400, None, "got null"),
    ("status-bad", "POST", "/alerts", JSON, j({**make_alert(), "status": "pending"}), 400, "alert.status", "firing"),
    ("fingerprint-number", "POST", "/alerts", JSON, j({**make_alert(), "fingerprint": 12}), 400, "alert.fingerprint", "letters and digits"),
    ("fingerprint-chars", "POST", "/alerts", JSON, j({**make_alert(), "fingerprint": "../../x"}), 400, "alert.fingerprint", "letters and digits"),
    ("generator-url-number", "POST", "/alerts", JSON, j({**make_alert(), "generatorURL": 5}), 400, "alert.generatorURL", "must be a string"),
    ("service-number", "POST", "/context/deploys", JSON, j({**DEPLOY, "service": 7}), 400, "body.service", "must be a string"),
    ("duration-string", "POST", "/context/traces", JSON, j({**TRACE, "duration_ms": "12"}), 400, "body.duration_ms", "must be a number"),
    ("duration-bool", "POST", "/context/traces", JSON, j({**TRACE, "duration_ms": True}), 400, "body.duration_ms", "boolean"),
    ("duration-negative", "POST", "/context/traces", JSON, j({**TRACE, "duration_ms": -1}), 400, "body.duration_ms", "between 0"),
    ("level-number", "POST", "/context/logs", JSON, j({**LOG, "level": 3}), 400, "body.level", "must be a string"),
    ("attributes-list", "POST", "/context/logs", JSON, j({**LOG, "attributes": [1]}), 400, "body.attributes", "must be an object"),
    ("record-in-batch", "POST", "/context/logs", JSON, j([LOG, "oops"]), 400, "[1]", "must be a JSON object"),
    ("context-null", "POST", "/context/logs", JSON, b"null", 400, "body", "got null"),
    # missing fields
    ("no-labels", "POST", "/alerts", JSON, j({"annotations": {}}), 400, "alert.labels", "is required"),
    ("empty-labels", "POST", "/alerts", JSON, j({"labels": {}}), 400, "alert.labels", "at least one label"),
    ("no-commit", "POST", "/context/deploys", JSON, j({"service": "s"}), 400, "body.commit", "is required"),
    ("no-service", "POST", "/context/logs", JSON, j({"message": "m"}), 400, "body.service", "is required"),
    ("blank-service", "POST", "/context/logs", JSON, j({**LOG, "service": "  "}), 400, "body.service", "must not be empty"),
    ("no-trace-id", "POST", "/context/traces", JSON, j({"service": "s", "duration_ms": 1}), 400, "body.trace_id", "is required"),
    ("no-duration", "POST", "/context/traces", JSON, j({"service": "s", "trace_id": "t"}), 400, "body.duration_ms", "is required"),
    # empty bodies and batches
    ("empty-alert", "POST", "/alerts", JSON, b"", 400, None, "empty"),
    ("blank-alert", "POST", "/alerts", JSON, b" \n\t ", 400, None, "empty"),
    ("empty-context", "POST", "/context/logs", {}, b"", 400, None, "empty"),
    ("empty-array", "POST", "/context/logs", JSON, b"[]", 400, None, "empty"),
    ("no-alerts", "POST", "/alerts", JSON, j({"alerts": []}), 400, "alerts", "no alerts"),
    ("too-many-records", "POST", "/context/logs", NDJSON, (j(LOG) + b"\n") * 10_001, 400, None, "limit is 10000"),
    # oversized: the default limit is 5 MiB
    ("oversized-alert", "POST", "/alerts", JSON, b" " * (5 * MIB + 1), 413, None, "limit is 5242880 bytes"),
    ("oversized-context", "POST", "/context/logs", NDJSON, (j({**LOG, "message": "x" * 1000}) + b"\n") * (5 * 1024 + 10), 413, None, "5242880"),
    # deep nesting
    ("deep-list", "POST", "/alerts", JSON, b"[" * 100_000 + b"]" * 100_000, 400, None, "nested"),
    ("deep-object", "POST", "/context/logs", JSON, b'{"a":' * 40 + b"1" + b"}" * 40, 400, None, "nested more than 32"),
    ("deep-attribute", "POST", "/context/logs", JSON, j({**LOG, "x": json.loads("[" * 40 + "]" * 40)}), 400, None, "nested more than 32"),
    ("deep-ndjson", "POST", "/context/logs", NDJSON, b"[" * 50_000 + b"]" * 50_000 + b"\n", 400, None, "nested"),
    # invalid timestamps
    ("ts-words", "POST", "/context/logs", JSON, j({**LOG, "ts": "yesterday"}), 400, "body.ts", "RFC 3339"),
    ("ts-no-zone", "POST", "/context/logs", JSON, j({**LOG, "ts": "2026-11-27T15:00:00"}), 400, "body.ts", "RFC 3339"),
    ("ts-feb-30", "POST", "/context/deploys", JSON, j({**DEPLOY, "when": "2026-02-30T00:00:00Z"}), 400, "body.when", "not a valid date"),
    ("ts-number", "POST", "/context/logs", JSON, j({**LOG, "ts": 1764255600}), 400, "body.ts", "RFC 3339"),
    ("ts-future", "POST", "/context/logs", JSON, j({**LOG, "ts": "2099-01-01T00:00:00Z"}), 400, "body.ts", "in the future"),
    ("starts-at-bad", "POST", "/alerts", JSON, j({**make_alert(), "startsAt": "2026-13-01T00:00:00Z"}), 400, "alert.startsAt", "month"),
    ("starts-at-future", "POST", "/alerts", JSON, j(make_alert(starts_at="2999-01-01T00:00:00Z")), 400, "alert.startsAt", "in the future"),
    ("ends-at-bad", "POST", "/alerts", JSON, j({**make_alert(), "endsAt": "soon"}), 400, "alert.endsAt", "RFC 3339"),
    ("since-bad", "GET", "/api/incidents?since=2026-11-27", {}, b"", 400, "since", "RFC 3339"),
    ("ts-offset-99", "POST", "/context/logs", JSON, j({**LOG, "ts": "2026-11-27T15:00:00+99:99"}), 400, "body.ts", "offsets are -14:00 to +14:00"),
    ("ts-offset-24", "POST", "/context/deploys", JSON, j({**DEPLOY, "when": "2026-11-27T15:00:00+24:00"}), 400, "body.when", "offsets are -14:00 to +14:00"),
    ("ts-offset-minutes", "POST", "/context/logs", JSON, j({**LOG, "ts": "2026-11-27T15:00:00-05:60"}), 400, "body.ts", "invalid offset -05:60"),
    ("starts-at-offset", "POST", "/alerts", JSON, j({**make_alert(), "startsAt": "2026-11-27T15:00:00+14:30"}), 400, "alert.startsAt", "offsets are -14:00 to +14:00"),
    ("ts-ten-digits", "POST", "/context/logs", JSON, j({**LOG, "ts": "2026-11-27T15:00:00.1234567890Z"}), 400, "body.ts", "at most 9 fractional digits"),
    ("ts-full-width", "POST", "/context/logs", JSON, j({**LOG, "ts": "\uff12\uff10\uff12\uff16-11-27T15:00:00Z"}), 400, "body.ts", "only ASCII"),
    ("ts-arabic-digits", "POST", "/context/traces", JSON, j({**TRACE, "ts": "2026-11-27T15:00:00.\u0661\u0662Z"}), 400, "body.ts", "only ASCII"),
    ("since-full-width", "GET", "/api/incidents?since=2026-11-27T15:00:0%EF%BC%90Z", {}, b"", 400, "since", "only ASCII"),
    ("since-offset", "GET", "/api/incidents?since=2026-11-27T15:00:00%2B99:99", {}, b"", 400, "since", "offsets are"),
    # bytes that are not UTF-8 text
    ("latin-1", "POST", "/context/logs", JSON, b'{"service":"s","message":"caf\xe9"}', 400, None, "not valid UTF-8"),
    ("binary", "POST", "/alerts", JSON, bytes(range(128, 256)), 400, None, "not valid UTF-8 (bad byte at offset 0)"),
    ("lone-surrogate-label", "POST", "/alerts", JSON, b'{"labels":{"alertname":"\\ud800"}}', 400, None, "surrogate"),
    ("lone-surrogate-log", "POST", "/context/logs", JSON, b'{"service":"s","message":"\\udc00"}', 400, None, "surrogate"),
    ("lone-surrogate-key", "POST", "/context/logs", JSON, b'{"service":"s","message":"m","\\ud800":1}', 400, None, "surrogate"),
    # NUL
    ("nul-label", "POST", "/alerts", JSON, j(make_alert(service="a\x00b")), 400, "alert.labels.service", "NUL"),
    ("nul-label-name", "POST", "/alerts", JSON, j({"labels": {"alertname": "a", "x\x00": "y"}}), 400, "alert.labels.x\x00", "NUL"),
    ("nul-annotation", "POST", "/alerts", JSON, j(make_alert(annotations={"summary": "\x00"})), 400, "alert.annotations.summary", "NUL"),
    ("nul-generator-url", "POST", "/alerts", JSON, j({**make_alert(), "generatorURL": "http://x/\x00"}), 400, "alert.generatorURL", "NUL"),
    ("nul-message", "POST", "/context/logs", JSON, j({**LOG, "message": "a\x00b"}), 400, "body.message", "NUL"),
    ("nul-attribute", "POST", "/context/logs", JSON, j({**LOG, "extra": "\x00"}), 400, "body.extra", "NUL"),
    ("nul-nested-attribute", "POST", "/context/traces", JSON, j({**TRACE, "tags": {"k": ["\x00"]}}), 400, "body.tags", "NUL"),
    ("nul-raw-byte", "POST", "/context/logs", JSON, b'{"service":"s","message":"a\x00b"}', 400, None, "control character"),
    ("nul-resolve-note", "POST", "/api/incidents/inc-1/resolve", JSON, j({"note": "\x00"}), 400, "note", "note"),
    ("nul-query", "GET", "/api/incidents?service=a%00b", {}, b"", 400, "service", "NUL"),
    # paths
    ("bad-incident-id", "GET", "/api/incidents/inc%20x", {}, b"", 400, "id", "invalid incident id"),
    ("bad-record-id", "GET", "/api/context/logs/-1", {}, b"", 400, "id", "positive whole number"),
    ("record-id-past-int64", "GET", "/api/context/logs/9223372036854775808", {}, b"", 404, "id", "no logs record"),
    ("record-id-int64-max", "GET", "/api/context/traces/9223372036854775807", {}, b"", 404, "id", "no traces record"),
    ("pull-id-past-int64", "GET", "/api/pulls/9223372036854775808", {}, b"", 404, "id", "no pull"),
    ("unknown-kind", "POST", "/context/metrics", JSON, j(LOG), 404, None, "unknown context kind"),
    ("unknown-incident", "GET", "/api/incidents/inc-000000000000", {}, b"", 404, "id", "no incident"),
    ("resolve-unknown", "POST", "/api/incidents/inc-000000000000/resolve", {}, b"", 404, "id", "no incident"),
    ("wrong-method", "GET", "/alerts", {}, b"", 405, None, "Method Not Allowed"),
]
# fmt: on


# Odd but valid: accepted (2xx) and stored. (id, method, path, headers, body, status)
# fmt: off
ACCEPTED: list[tuple[str, str, str, dict[str, str], bytes, int]] = [
    ("largest-float", "POST", "/context/logs", JSON, b'{"service":"s","message":"m","x":1.7976931348623157e308}', 200),
    ("negative-zero", "POST", "/context/logs", JSON, b'{"service":"s","message":"m","x":[-0.0,[-1e308]]}', 200),
    ("underflow", "POST", "/context/traces", JSON, b'{"trace_id":"u","service":"s","duration_ms":1e-400}', 200),
    ("long-integer", "POST", "/context/logs", JSON, b'{"service":"s","message":"m","n":' + b"9" * 4000 + b"}", 200),
    ("integer-past-int64", "POST", "/context/deploys", JSON, b'{"service":"s","commit":"c","n":[18446744073709551616,-9223372036854775809]}', 200),
    ("offset-plus-14", "POST", "/context/logs", JSON, j({**LOG, "ts": "2026-11-27T15:00:00.123456789+14:00"}), 200),
    ("offset-minus-14", "POST", "/context/deploys", JSON, j({**DEPLOY, "when": "2026-11-27T15:00:00-14:00"}), 200),
    ("full-width-text", "POST", "/context/logs", JSON, j({**LOG, "message": "\uff12\uff10\uff12\uff16 \U0001f525"}), 200),
    ("nested-31", "POST", "/context/logs", JSON, j({**LOG, "x": json.loads("[" * 30 + "1.5e300" + "]" * 30)}), 200),
    ("alert-offset", "POST", "/alerts", JSON, j({**make_alert(alertname="Odd"), "startsAt": "2026-11-27T15:00:00.5-13:59"}), 200),
]
# fmt: on


def _snapshot(api: AppClient) -> dict[str, Any]:
    incidents = api.get("/api/incidents?limit=1000").json()["incidents"]
    stats = api.get("/api/stats").json()
    context = {}
    for kind, n in stats["context"].items():
        for i in range(1, n + 1):
            context[f"{kind}/{i}"] = api.get(f"/api/context/{kind}/{i}").json()
    for key in ("uptime_seconds", "since_start"):
        del stats[key]
    return {
        "incidents": [api.get(f"/api/incidents/{i['id']}").json() for i in incidents],
        "context": context,
        "stats": stats,
    }


@pytest.fixture(scope="module")
def seeded(shipped_rules, tmp_path_factory) -> Iterator[tuple[AppClient, dict[str, Any]]]:
    """An app holding an incident (the demo), context of every kind and a resolved incident."""
    db = tmp_path_factory.mktemp("bad-input") / "store.db"
    settings = ServeSettings(db=str(db), rules=(rules_dir(),), quiet=True)
    state, app = open_app(settings, ruleset=shipped_rules)
    api = AppClient(app)
    try:
        api.post("/context/deploys", json={**DEPLOY, "when": ts(minutes=3)})
        api.post(
            "/context/logs", json=[{**LOG, "message": f"upstream timeout {i}"} for i in range(10)]
        )
        api.post("/context/traces", json=[{**TRACE, "trace_id": f"t{i}"} for i in range(3)])
        api.post("/alerts", json=make_alert(service="api-gateway", team="edge"))
        resolved = api.post("/alerts", json=make_alert(service="search")).json()
        api.post(
            f"/api/incidents/{resolved['results'][0]['incident']}/resolve", json={"note": "ok"}
        )
        yield api, _snapshot(api)
    finally:
        api.close()
        state.close()


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "field", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_input_is_refused_cleanly(seeded, method, path, headers, body, status, field, words):
    api, _ = seeded
    r = api.request(method, path, headers=headers, content=body)
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()
    assert isinstance(err["error"], str) and err["error"], err
    assert words in err["error"], err
    if field is None:
        assert "field" not in err or err["field"], err
    else:
        assert err.get("field") == field, err
    assert set(err) <= {"error", "field"}


def test_bad_input_leaves_stored_data_intact(seeded):
    api, before = seeded
    for _, method, path, headers, body, *_ in CASES:
        r = api.request(method, path, headers=headers, content=body)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
    assert _snapshot(api) == before


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def backend_db(request, tmp_path) -> Iterator[str]:
    """A fresh store URL: a SQLite file, or a scratch PostgreSQL schema (dropped after)."""
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
        return
    dsn = pg.require_dsn()
    schema = pg.new_schema_name("badinput")
    try:
        yield pg.with_schema(dsn, schema)
    finally:
        pg.drop_schema(dsn, schema)


def test_everything_the_battery_stored_reads_back(make_app, backend_db):
    """Send the whole battery, refused and accepted, to a fresh app; then read back every
    record and incident it stored: each read answers 200 with valid JSON, never 500. On
    both backends: ids past the 64-bit range are 404 there too (in the battery)."""
    _, api = make_app(db=backend_db)
    stored: dict[str, set[str]] = {}
    for _, method, path, headers, body, *_ in CASES:
        r = api.request(method, path, headers=headers, content=body)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
    for name, method, path, headers, body, status in ACCEPTED:
        r = api.request(method, path, headers=headers, content=body)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        if path.startswith("/context/"):
            stored.setdefault(path.rsplit("/", 1)[1], set()).update(r.json()["ids"])
    counts = api.get("/api/stats").json()["context"]
    assert {k: len(v) for k, v in stored.items()} == {k: n for k, n in counts.items() if n}
    reads = 0
    for kind, ids in stored.items():
        for rid in ids:
            r = api.get(f"/api/context/{kind}/{rid}")
            assert r.status_code == 200, (kind, rid, r.text[:300])
            json.loads(r.text)  # strict JSON: no NaN or Infinity
            reads += 1
    incidents = api.get("/api/incidents?limit=1000").json()["incidents"]
    assert incidents
    for incident in incidents:
        r = api.get(f"/api/incidents/{incident['id']}")
        assert r.status_code == 200, r.text[:300]
        reads += 1
    for path in ("/api/incidents", "/api/stats", "/metrics", "/api/deliveries"):
        assert api.get(path).status_code == 200, path
    for far in ("9223372036854775807", "9223372036854775808", "9999999999999999999"):
        for path in (f"/api/context/logs/{far}", f"/api/pulls/{far}"):
            assert api.get(path).status_code == 404, path
    assert reads == len(ACCEPTED)  # each accepted request stored one record or incident


def test_a_405_names_the_allowed_methods(api):
    for method, path, allowed in [
        ("GET", "/alerts", {"POST"}),
        ("DELETE", "/api/incidents", {"GET", "HEAD"}),
        ("PUT", "/context/logs", {"POST"}),
    ]:
        r = api.request(method, path)
        assert r.status_code == 405, r.text
        assert {m.strip() for m in r.headers["allow"].split(",")} == allowed
        assert r.json() == {"error": "Method Not Allowed"}


def test_oversized_body_without_content_length_is_refused(make_app):
    _, api = make_app(max_body=64 * 1024)

    async def chunks():
        for _ in range(100):
            yield b" " * 1024

    r = api.post("/context/logs", content=chunks(), headers=JSON)
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413
    assert "65536 bytes" in r.json()["error"]
    assert api.get("/api/stats").json()["context"]["logs"] == 0


def test_max_body_setting_is_applied(make_app):
    _, api = make_app(max_body=1024)
    assert api.post("/context/logs", json={**LOG, "message": "x" * 2000}).status_code == 413
    assert api.post("/context/logs", json=LOG).status_code == 200


def test_a_body_just_under_the_limit_is_accepted(make_app):
    _, api = make_app(max_body=MIB)
    lines = [{**LOG, "message": f"{i:08d} " + "x" * 190} for i in range(4000)]
    body = b"".join(j(x) + b"\n" for x in lines)
    assert len(body) < MIB
    r = api.post("/context/logs", content=body, headers=NDJSON)
    assert r.status_code == 200 and r.json()["accepted"] == 4000


# --- odd but valid: accepted, kept verbatim, never evaluated --------------------------------

ODD_LABELS = {
    "alertname": "{{ 7*7 }}",
    "service": "<script>alert(1)</script>",
    "team": "{% for x in range(3) %}x{% endfor %}",
    "note": "${jndi:ldap://x} ' OR 1=1; --",
}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_template_and_markup_labels_are_data(make_app, fmt):
    state, api = make_app(report=fmt)
    r = api.post(
        "/alerts", json=make_alert(annotations={"summary": "{{ 7*7 }} <b>x</b>"}, **ODD_LABELS)
    )
    assert r.status_code == 200, r.text
    incident_id = r.json()["results"][0]["incident"]
    inc = api.get(f"/api/incidents/{incident_id}").json()
    assert inc["alert"]["labels"] == ODD_LABELS
    assert inc["title"] == "{{ 7*7 }} <b>x</b>"
    assert inc["team"] == ODD_LABELS["team"]
    assert r.headers["content-type"].startswith("application/json")
    out = printed(state)
    assert "xxx" not in out  # the {% for %} label was not run (nor {{ 7*7 }}: see below)
    if fmt == "json":
        assert json.loads(out)["incident"]["alert"]["labels"] == ODD_LABELS
    else:
        assert f"{{{{ 7*7 }}}} <b>x</b>  ({incident_id}, opened)" in out.splitlines()[0]
        assert "Routed to team {% for x in range(3) %}x{% endfor %}" in out
        assert "<script>alert(1)</script>" in out
        assert "{% for x in range(3) %}x{% endfor %}" in out
    listed = api.get("/api/incidents?service=%3Cscript%3Ealert(1)%3C/script%3E").json()
    assert [i["id"] for i in listed["incidents"]] == [incident_id]


def test_markup_in_context_is_stored_verbatim(api):
    rec = {"service": "<svc>", "level": "error", "message": "{{ 7*7 }} <script>x</script>"}
    [rid] = api.post("/context/logs", json=rec).json()["ids"]
    got = api.get(f"/api/context/logs/{rid}").json()
    assert (got["service"], got["message"]) == ("<svc>", "{{ 7*7 }} <script>x</script>")


def test_reporter_stream_is_plain_text():
    assert StdoutReporter("text").fmt == "text"


OTLP_LOG = (
    b'{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":'
    b'{"stringValue":"api"}}]},"scopeLogs":[{"logRecords":[{"severityText":"ERROR",'
    b'"body":{"stringValue":"x"},"attributes":[{"key":"n","value":{"doubleValue":NUMBER}}]}]}]}]}'
)
LOKI = b'{"streams":[{"stream":{"service":"api"},"values":[["1764255600000000000","level=error x",{"m":NUMBER}]]}]}'


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"1e400", b"NaN", b"-Infinity"])
@pytest.mark.parametrize(
    ("path", "template"), [("/v1/logs", OTLP_LOG), ("/loki/api/v1/push", LOKI)]
)
def test_non_finite_numbers_are_refused_by_the_collector_endpoints(api, path, template, number):
    before = api.get("/api/stats").json()["context"]["logs"]
    r = api.post(path, content=template.replace(b"NUMBER", number), headers=JSON)
    assert r.status_code == 400, r.text
    assert "finite" in r.text
    assert api.get("/api/stats").json()["context"]["logs"] == before
    # the same body with a finite number is stored
    r = api.post(path, content=template.replace(b"NUMBER", b"1.5e300"), headers=JSON)
    assert r.status_code in (200, 204), r.text  # Loki's push answers 204
    assert api.get("/api/stats").json()["context"]["logs"] == before + 1
