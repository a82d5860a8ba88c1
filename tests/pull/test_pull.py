"""Pull rules (prometheus, loki) against stand-ins: safe query vars, evidence that
resolves, the budget (the commit never waits; the page waits at most the budget), and
one request per (query, time range) per envelope."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from typing import Any

import pytest

from engine.rules.compiler import compile_rule
from engine.rules.conditions import ConditionCompiler
from engine.rules.pullspec import compile_pull, quote
from engine.testing import AppClient, make_alert, make_webhook, ts, wait_for_deliveries
from tests.pull.standin import StandIn

NASTY = 'x"} or vector(1) #\\'
RULE = {
    "id": "p.test",
    "description": "d",
    "source": "prometheus",
    "vars": {"service": "$alert.labels.service"},
    "query": 'sum(rate(http_requests_total{service=$service, code=~"5.."}[1m]))',
    "summary": "s",
    "evidence": {"from": "matched"},
}


def _incident(client: AppClient, incident_id: str) -> dict[str, Any]:
    r = client.get(f"/api/incidents/{incident_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _wait_findings(client: AppClient, incident_id: str, rule_id: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        inc = _incident(client, incident_id)
        found = [
            f for f in inc["findings"] if rule_id in (f["rule"], f["outputs"].get("failed_rule"))
        ]
        if found or time.monotonic() > deadline:
            return inc, found
        time.sleep(0.05)


def _printed(state) -> list[dict[str, Any]]:
    wait_for_deliveries(state)
    stream = state.delivery.sinks["stdout"].stream
    assert isinstance(stream, io.StringIO)
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# --- substitution ----------------------------------------------------------------------


def test_quote_escapes_as_promql_and_logql_strings() -> None:
    assert quote('a"b\\c\nd\te') == '"a\\"b\\\\c\\nd\\te"'
    assert quote("\x00\x7f") == '"\\u0000\\u007f"'
    assert quote(NASTY) == '"x\\"} or vector(1) #\\\\"'


def test_a_label_value_can_only_become_a_string_literal() -> None:
    rule, problems = compile_rule(RULE, file="p.yaml")
    assert rule is not None and rule.pull is not None, problems
    text = rule.pull.render({"alert": {"labels": {"service": NASTY}}, "params": {}})
    assert text == (
        'sum(rate(http_requests_total{service="x\\"} or vector(1) #\\\\", code=~"5.."}[1m]))'
    )
    assert rule.pull.render({"alert": {"labels": {}}, "params": {}}) is None  # label missing


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("up{service=$svc}", "undeclared-var"),
        ('up{service="$service"}', "quoted-placeholder"),
        ("up{service=$ service}", "pull-query"),
        ('up{service="open}', "pull-query"),
    ],
)
def test_lint_refuses_placeholders_that_are_not_declared_vars(query: str, code: str) -> None:
    problems: list = []
    values = ConditionCompiler(lambda p: None, lambda p: None, problems)
    doc = {**RULE, "query": query}
    compile_pull(doc, "prometheus", False, values, problems)
    assert code in {p.code for p in problems}, problems


def test_comments_and_dollars_in_strings_are_left_alone() -> None:
    rule, problems = compile_rule(
        {**RULE, "query": 'up{path=~"^/api$", service=$service} # $$ not $service\n'},
        file="p.yaml",
    )
    assert rule is not None and rule.pull is not None, problems
    text = rule.pull.render({"alert": {"labels": {"service": "a"}}, "params": {}})
    assert text == 'up{path=~"^/api$", service="a"} # $$ not $service\n'


# --- through the app -------------------------------------------------------------------


def _ratio(value: str) -> Any:
    def answer(path: str, params: dict[str, str]) -> dict[str, Any]:
        metric = {"service": "checkout"}
        return {
            "resultType": "vector",
            "result": [{"metric": metric, "value": [time.time(), value]}],
        }

    return answer


def test_injection_reaches_the_source_as_a_quoted_literal(pull_app) -> None:
    with StandIn() as prom:
        state, client = pull_app(prometheus_url=prom.url)
        r = client.post("/alerts", json=make_webhook(make_alert(service=NASTY, starts_at=ts())))
        assert r.status_code == 200
        _printed(state)  # the page goes out once the pull is done
    queries = [p["query"] for path, p in prom.requests if path == "/api/v1/query"]
    assert queries == [
        'sum by (service) (rate(http_requests_total{service="x\\"} or vector(1) #\\\\", '
        'code=~"5.."}[1m])) / sum by (service) (rate(http_requests_total{service='
        '"x\\"} or vector(1) #\\\\"}[1m]))\n'
    ]


def test_a_prometheus_finding_cites_a_pull_that_resolves_and_is_paged(pull_app) -> None:
    with StandIn(_ratio("0.2")) as prom:
        state, client = pull_app(prometheus_url=prom.url)
        r = client.post(
            "/alerts", json=make_webhook(make_alert(service="checkout", starts_at=ts()))
        )
        incident_id = r.json()["results"][0]["incident"]
        inc, found = _wait_findings(client, incident_id, "prometheus.error_ratio")
        pages = _printed(state)
    assert [f["severity"] for f in found] == ["medium"], found
    assert "20.0%" in found[0]["summary"]
    evidence = found[0]["evidence"][0]
    assert evidence["path"].startswith("pulls/")
    record = client.get(f"/api/{evidence['path']}").json()
    assert record["value"] == 0.2 and record["labels"] == {"service": "checkout"}
    for key, value in evidence["snapshot"].items():
        assert record.get(key) == value, key
    pull = client.get("/api/" + record["pull"]["path"]).json()
    assert pull["source"] == "prometheus" and "http_requests_total" in pull["query"]
    assert pull["start"] == pull["end"] == inc["alert"]["startsAt"]
    assert pull["link"].startswith(prom.url + "/graph?g0.expr=sum")
    assert pull["answer"]["records"][0]["path"] == evidence["path"]
    assert client.get("/api/pulls/999999").status_code == 404
    assert client.get("/api/pulls/abc").status_code == 400
    trigger = [p for p in pages if p["incident"]["id"] == incident_id]
    assert trigger, pages
    assert "prometheus.error_ratio" in {f["rule"] for f in trigger[0]["incident"]["findings"]}


def test_a_slow_source_never_delays_the_commit_and_the_page_waits_the_budget(pull_app) -> None:
    budget = 0.6
    with StandIn(_ratio("0.5"), delay=3.0) as prom:
        state, client = pull_app(prometheus_url=prom.url, budget=timedelta(seconds=budget))
        started = time.monotonic()
        r = client.post(
            "/alerts", json=make_webhook(make_alert(service="checkout", starts_at=ts()))
        )
        answered = time.monotonic() - started
        assert r.status_code == 200
        incident_id = r.json()["results"][0]["incident"]
        assert answered < budget, "POST /alerts waited for the pull"
        assert _incident(client, incident_id)["id"] == incident_id  # stored at once
        deadline = time.monotonic() + 5
        stream = state.delivery.sinks["stdout"].stream
        while incident_id not in stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        paged = time.monotonic() - started
    assert budget * 0.8 <= paged <= budget + 1.0, paged
    page = json.loads(stream.getvalue().splitlines()[0])
    errors = [
        f
        for f in page["incident"]["findings"]
        if f["outputs"].get("failed_rule") == "prometheus.error_ratio"
    ]
    assert errors and errors[0]["severity"] == "low"
    assert "did not answer within the pull budget" in errors[0]["summary"]
    assert errors[0]["outputs"] == {"failed_rule": "prometheus.error_ratio"}


def test_without_pull_rules_to_wait_for_the_page_is_not_held(pull_app) -> None:
    state, client = pull_app(prometheus_url="")  # the rule errors at once: nothing to ask
    started = time.monotonic()
    r = client.post("/alerts", json=make_webhook(make_alert(service="checkout", starts_at=ts())))
    incident_id = r.json()["results"][0]["incident"]
    pages = _printed(state)
    assert time.monotonic() - started < 1.5
    findings = pages[0]["incident"]["findings"]
    error = next(f for f in findings if f["outputs"].get("failed_rule") == "prometheus.error_ratio")
    assert "no --prometheus-url is configured" in error["summary"]
    assert pages[0]["incident"]["id"] == incident_id


def test_one_request_per_query_and_range_per_envelope(pull_app) -> None:
    start = ts()
    with StandIn(_ratio("0.2")) as prom:
        state, client = pull_app(prometheus_url=prom.url)
        body = make_webhook(
            make_alert(service="checkout", starts_at=start),
            make_alert(service="checkout", alertname="HighLatency", starts_at=start),
        )
        results = client.post("/alerts", json=body).json()["results"]
        assert [x["outcome"] for x in results] == ["opened", "opened"]
        for x in results:
            _, found = _wait_findings(client, x["incident"], "prometheus.error_ratio")
            assert found and found[0]["rule"] == "prometheus.error_ratio"
        _printed(state)
    assert len([p for p, _ in prom.requests if p == "/api/v1/query"]) == 1


def _streams(path: str, params: dict[str, str]) -> dict[str, Any]:
    now = int(time.time() * 1e9)
    lines = [[str(now - i * 10**9), f"ERROR upstream timeout request {i}"] for i in range(4)]
    return {
        "resultType": "streams",
        "result": [{"stream": {"service": "checkout", "level": "error"}, "values": lines}],
    }


def test_a_loki_rule_reads_log_lines_shaped_like_the_logs_source(pull_app) -> None:
    with StandIn(_streams) as loki:
        state, client = pull_app(loki_url=loki.url)
        r = client.post(
            "/alerts", json=make_webhook(make_alert(service="checkout", starts_at=ts()))
        )
        incident_id = r.json()["results"][0]["incident"]
        _, found = _wait_findings(client, incident_id, "loki.error_lines")
        _printed(state)
    assert found and found[0]["rule"] == "loki.error_lines", found
    assert "4 error lines from checkout" in found[0]["summary"]
    ((_path, params),) = [(p, q) for p, q in loki.requests if p.startswith("/loki/")]
    assert params["query"] == '{service="checkout"} |~ "(?i)error|fatal|panic"'
    assert int(params["end"]) - int(params["start"]) == 600 * 10**9
    assert params["direction"] == "backward"
    evidence = found[0]["evidence"]
    assert len(evidence) >= 1
    record = client.get(f"/api/{evidence[0]['path']}").json()
    assert record["message"].startswith("ERROR upstream timeout")
    assert record["level"] == "ERROR" and record["service"] == "checkout"
    for key, value in evidence[0]["snapshot"].items():
        assert record.get(key) == value, key


def test_a_refused_query_is_a_low_rule_error(pull_app) -> None:
    def refuse(path: str, params: dict[str, str]) -> dict[str, Any]:
        raise AssertionError("not reached")

    with StandIn(refuse) as loki:
        loki.handle = lambda path, params, headers: (400, "parse error : syntax error")  # type: ignore[method-assign]
        state, client = pull_app(loki_url=loki.url)
        r = client.post(
            "/alerts", json=make_webhook(make_alert(service="checkout", starts_at=ts()))
        )
        incident_id = r.json()["results"][0]["incident"]
        _, found = _wait_findings(client, incident_id, "loki.error_lines")
        _printed(state)
    assert found[0]["rule"] == "rule.error" and found[0]["severity"] == "low"
    assert "loki query failed: HTTP 400" in found[0]["summary"]


# --- metrics ---------------------------------------------------------------------------


def _pull_queries(client: AppClient) -> dict[tuple[str, str], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    return {
        (s.labels["source"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "incident_pilot_pull_queries"
        for s in family.samples
        if s.name.endswith("_total")
    }


def _wait_queries(client: AppClient, want: dict[tuple[str, str], float]) -> dict:
    deadline = time.monotonic() + 10
    while (got := _pull_queries(client)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return got


def test_pull_queries_are_counted_by_source_and_outcome(pull_app) -> None:
    """Two alerts of one envelope: each source is asked once (ok, or error when it
    refuses) and the second alert's identical query is answered from the envelope."""

    def refuse(path: str, params: dict[str, str]) -> dict[str, Any]:
        raise AssertionError("not reached")

    start = ts()
    with StandIn(_ratio("0.2")) as prom, StandIn(refuse) as loki:
        loki.handle = lambda path, params, headers: (400, "parse error")  # type: ignore[method-assign]
        state, client = pull_app(prometheus_url=prom.url, loki_url=loki.url)
        assert _pull_queries(client) == {}
        body = make_webhook(
            make_alert(service="checkout", starts_at=start),
            make_alert(service="checkout", alertname="HighLatency", starts_at=start),
        )
        assert client.post("/alerts", json=body).status_code == 200
        _printed(state)
        got = _wait_queries(
            client,
            {
                ("prometheus", "ok"): 1,
                ("prometheus", "cached"): 1,
                ("loki", "error"): 1,
                ("loki", "cached"): 1,
            },
        )
    assert got == {
        ("prometheus", "ok"): 1,
        ("prometheus", "cached"): 1,
        ("loki", "error"): 1,
        ("loki", "cached"): 1,
    }


def test_a_query_past_the_budget_is_counted_as_a_timeout(pull_app) -> None:
    with StandIn(_ratio("0.5"), delay=3.0) as prom:
        state, client = pull_app(prometheus_url=prom.url, budget=timedelta(seconds=0.5))
        client.post("/alerts", json=make_webhook(make_alert(service="checkout", starts_at=ts())))
        _printed(state)
        got = _wait_queries(client, {("prometheus", "timeout"): 1})
    assert got == {("prometheus", "timeout"): 1}
