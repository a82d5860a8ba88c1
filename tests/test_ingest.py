"""POST /context/{deploys,logs,traces}: the Go original's bodies, arrays, NDJSON, times."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from engine.testing import post_json_lines, ts
from engine.timeutil import format_ts, parse_ts, utcnow

DEPLOY = {"service": "api-gateway", "commit": "a39bf2c", "author": "alice"}
LOG = {"service": "api-gateway", "level": "ERROR", "message": "upstream timeout request 1"}
TRACE = {"trace_id": "t-aaa1", "service": "api-gateway", "duration_ms": 1500}


def stored(api, kind, record_id):
    r = api.get(f"/api/context/{kind}/{record_id}")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize(
    ("kind", "body", "time_key"),
    [("deploys", DEPLOY, "when"), ("logs", LOG, "ts"), ("traces", TRACE, "ts")],
)
def test_go_shapes_are_stored_and_read_back(api, kind, body, time_key):
    at = "2026-11-27T15:00:00Z"
    r = api.post(f"/context/{kind}", json={**body, time_key: at})
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 1, "ids": ["1"]}
    rec = stored(api, kind, "1")
    assert rec == {
        "id": "1",
        "kind": kind,
        "path": f"context/{kind}/1",
        "ts": at,
        **{k: v for k, v in body.items()},
    }


def test_when_and_ts_are_interchangeable(api):
    at = "2026-11-27T15:01:02Z"
    ids = api.post("/context/deploys", json=[{**DEPLOY, "ts": at}, {**DEPLOY, "when": at}]).json()
    assert [stored(api, "deploys", i)["ts"] for i in ids["ids"]] == [at, at]


def test_a_missing_time_is_the_received_time(api):
    before = utcnow()
    [rid] = api.post("/context/logs", json=LOG).json()["ids"]
    after = utcnow()
    assert before <= parse_ts(stored(api, "logs", rid)["ts"]) <= after


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("2026-11-27T17:00:00+02:00", "2026-11-27T15:00:00Z"),
        ("2026-11-27T10:00:00-05:00", "2026-11-27T15:00:00Z"),
        ("2026-11-27T15:00:00.5Z", "2026-11-27T15:00:00.5Z"),
        ("2026-11-27T15:00:00.123Z", "2026-11-27T15:00:00.123Z"),
        ("2026-11-27T15:00:00.123456789Z", "2026-11-27T15:00:00.123456Z"),
        ("2026-11-27t15:00:00z", "2026-11-27T15:00:00Z"),
    ],
)
def test_rfc3339_in_utc_out(api, sent, expected):
    [rid] = api.post("/context/logs", json={**LOG, "ts": sent}).json()["ids"]
    assert stored(api, "logs", rid)["ts"] == expected


def test_far_future_times_are_refused_and_a_little_skew_is_not(api):
    r = api.post("/context/deploys", json={**DEPLOY, "when": "2099-01-01T00:00:00Z"})
    assert r.status_code == 400
    assert r.json()["field"] == "body.when"
    assert "in the future" in r.json()["error"]
    soon = format_ts(utcnow() + timedelta(minutes=1))
    assert api.post("/context/deploys", json={**DEPLOY, "when": soon}).status_code == 200


def test_old_times_are_accepted(api):
    r = api.post("/context/logs", json={**LOG, "ts": "2020-01-01T00:00:00Z"})
    assert r.status_code == 200


def test_an_array_is_one_batch_with_ids_in_order(api):
    logs = [{**LOG, "message": f"m{i}"} for i in range(5)]
    out = api.post("/context/logs", json=logs).json()
    assert out["accepted"] == 5
    assert [stored(api, "logs", i)["message"] for i in out["ids"]] == [f"m{i}" for i in range(5)]


@pytest.mark.parametrize(
    "content_type",
    ["application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"],
)
def test_ndjson_with_its_content_types(api, content_type):
    body = "".join(json.dumps({**TRACE, "trace_id": f"t{i}"}) + "\n" for i in range(3))
    r = api.post("/context/traces", content=body + "\n", headers={"content-type": content_type})
    assert r.status_code == 200, r.text
    assert [stored(api, "traces", i)["trace_id"] for i in r.json()["ids"]] == ["t0", "t1", "t2"]


def test_ndjson_without_a_content_type_is_recognised(api):
    body = json.dumps(LOG) + "\n" + json.dumps({**LOG, "message": "second"}) + "\n"
    for content_type in ("application/json", "application/x-www-form-urlencoded", "text/plain"):
        r = api.post("/context/logs", content=body, headers={"content-type": content_type})
        assert r.status_code == 200, (content_type, r.text)
        assert r.json()["accepted"] == 2


def test_ndjson_helper(api):
    r = post_json_lines(api, "/context/logs", [LOG, LOG])
    assert r.json()["accepted"] == 2


def test_ndjson_error_names_the_line(api):
    body = json.dumps(LOG) + "\n" + '{"service": "x",\n'
    r = api.post("/context/logs", content=body, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("line 2:")
    bad_record = json.dumps(LOG) + "\n" + json.dumps({"service": "x"}) + "\n"
    r = api.post(
        "/context/logs", content=bad_record, headers={"content-type": "application/x-ndjson"}
    )
    assert r.status_code == 400 and r.json()["field"] == "[1].message"
    assert api.get("/api/stats").json()["context"]["logs"] == 0, "a bad batch stores nothing"


def test_curl_style_form_content_type_is_parsed_as_json(api):
    r = api.post(
        "/context/deploys",
        content=json.dumps(DEPLOY),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200, r.text


def test_log_level_defaults_to_error_and_is_upper_cased(api):
    ids = api.post(
        "/context/logs",
        json=[
            {"service": "s", "message": "no level"},
            {"service": "s", "message": "x", "level": "warn"},
        ],
    ).json()["ids"]
    assert [stored(api, "logs", i)["level"] for i in ids] == ["ERROR", "WARN"]


def test_deploy_author_defaults_to_unknown(api):
    [rid] = api.post("/context/deploys", json={"service": "s", "commit": "c1"}).json()["ids"]
    assert stored(api, "deploys", rid)["author"] == "unknown"


def test_extra_keys_are_kept_as_attributes(api):
    [rid] = api.post(
        "/context/traces", json={**TRACE, "span_count": 12, "env": {"region": "eu"}}
    ).json()["ids"]
    rec = stored(api, "traces", rid)
    assert rec["attributes"] == {"span_count": 12, "env": {"region": "eu"}}


def test_duration_may_be_a_float(api):
    [rid] = api.post("/context/traces", json={**TRACE, "duration_ms": 12.5}).json()["ids"]
    assert stored(api, "traces", rid)["duration_ms"] == 12.5


def test_context_counts_in_stats(api):
    api.post("/context/deploys", json=[DEPLOY, DEPLOY])
    api.post("/context/logs", json=LOG)
    api.post("/context/traces", json=[TRACE] * 3)
    stats = api.get("/api/stats").json()
    assert stats["context"] == {"deploys": 2, "logs": 1, "traces": 3}
    assert stats["since_start"]["context_traces"] == 3


def test_unknown_kind_is_404(api):
    r = api.post("/context/metrics", json=LOG)
    assert r.status_code == 404
    assert "deploys, logs, traces" in r.json()["error"]


def test_unknown_record_is_404(api):
    r = api.get("/api/context/logs/999")
    assert r.status_code == 404 and r.json()["field"] == "id"


def test_each_kind_numbers_its_own_records(api):
    [d] = api.post("/context/deploys", json=DEPLOY).json()["ids"]
    [log_id] = api.post("/context/logs", json={**LOG, "ts": ts(seconds=5)}).json()["ids"]
    assert d == log_id == "1"
    assert stored(api, "deploys", d)["commit"] == DEPLOY["commit"]
    assert stored(api, "logs", log_id)["message"] == LOG["message"]
