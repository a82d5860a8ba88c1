"""The pages in process: what they show, sign-in and sessions, scopes, CSRF, headers,
escaping. (tests/web/test_browser.py drives the same pages in Chromium.)"""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest

from engine.server.state import StartupError
from engine.testing import make_alert, wait_for_deliveries
from engine.web.session import SESSION_COOKIE

from .helpers import HOSTILE, SESSION_KEY, TOKENS, TOKENS_ENV, bearer, demo_context, form_value
from .helpers import hostile_alert as make_hostile


@pytest.fixture
def tokens_env(monkeypatch):
    monkeypatch.setenv("INCIDENT_PILOT_TOKENS", TOKENS_ENV)
    monkeypatch.setenv("INCIDENT_PILOT_SESSION_KEY", SESSION_KEY)


def seed(api, headers=None) -> str:
    deploy, logs = demo_context()
    assert api.post("/context/deploys", json=deploy, headers=headers).status_code == 200
    assert api.post("/context/logs", json=logs, headers=headers).status_code == 200
    r = api.post(
        "/alerts",
        json=make_alert(
            service="api-gateway", team="edge", annotations={"summary": "5xx on api-gateway"}
        ),
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["incident"]


def sign_in(api, scope: str, next_path: str = "/ui/incidents"):
    form = api.get("/ui/login", params={"next": next_path})
    assert form.status_code == 200
    return api.post(
        "/ui/login",
        data={"token": TOKENS[scope], "csrf": form_value(form.text, "csrf"), "next": next_path},
        follow_redirects=False,
    )


def session_cookie(r):
    """The session cookie a response sets (a Morsel)."""
    for header in r.headers.get_list("set-cookie"):
        cookie = SimpleCookie(header)
        if SESSION_COOKIE in cookie:
            return cookie[SESSION_COOKIE]
    raise AssertionError(f"no session cookie set: {r.headers.get_list('set-cookie')}")


def test_open_server_pages_show_the_demo_incident(api):
    incident_id = seed(api)
    listing = api.get("/ui/incidents")
    assert listing.status_code == 200
    assert f'href="/ui/incidents/{incident_id}"' in listing.text
    assert "5xx on api-gateway" in listing.text
    page = api.get(f"/ui/incidents/{incident_id}")
    assert page.status_code == 200
    html = page.text
    for rule in ("deploy.recent_correlated", "logs.error_spike", "routing.team"):
        assert rule in html
    assert 'class="evidence-link" href="/ui/context/deploys/1"' in html
    # routing.team cites the alert's team label: a link to the alert on the same page.
    assert 'class="evidence-link" href="#alerts">alert/labels/team</a>' in html
    assert "kubectl rollout undo deployment/api-gateway" in html  # the copyable command
    assert 'data-copy="kubectl rollout undo deployment/api-gateway"' in html
    # The timeline: the alert, the deploy and the binned ERROR lines, each a link.
    assert 'data-kind="alert"' in html
    assert re.search(r'<a href="/ui/context/deploys/1" class="mark mark-deploy"', html)
    bins = re.findall(r'<a href="/ui/context/logs/(\d+)" class="mark mark-errors"', html)
    assert bins and all(1 <= int(n) <= 10 for n in bins)
    record = api.get("/ui/context/deploys/1")
    assert record.status_code == 200 and "a39bf2c" in record.text and "alice" in record.text


def test_every_page_carries_the_security_headers(api):
    incident_id = seed(api)
    for path in ("/ui/incidents", f"/ui/incidents/{incident_id}", "/ui/rules", "/ui/deliveries"):
        r = api.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
        assert "<script>" not in r.text  # only <script src=...> from our origin
        assert re.search(r"\sstyle=", r.text) is None  # no inline style either
    js = api.get("/ui/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert api.get("/ui/static/..%2Fincident.html").status_code == 404


def test_hostile_labels_render_as_text(api):
    r = api.post("/alerts", json=make_hostile())
    incident_id = r.json()["results"][0]["incident"]
    html = api.get(f"/ui/incidents/{incident_id}").text
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#34;label&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert 'href="javascript:' not in html  # the generatorURL is shown, not linked
    listing = api.get("/ui/incidents", params={"q": "hostile"}).text
    assert f'href="/ui/incidents/{incident_id}"' in listing and HOSTILE not in listing


def test_list_filters_search_and_paging(api):
    ids = [
        api.post("/alerts", json=make_alert(service=f"svc-{n}", team="core")).json()["results"][0][
            "incident"
        ]
        for n in range(3)
    ]
    gw = seed(api)
    only = api.get(
        "/ui/incidents", params={"q": "api gateway", "status": "open", "window": "1h"}
    ).text
    assert f"/ui/incidents/{gw}" in only and not any(f"/ui/incidents/{i}" in only for i in ids)
    assert f"/ui/incidents/{gw}" not in api.get("/ui/incidents", params={"team": "core"}).text
    first = api.get("/ui/incidents", params={"limit": "2"}).text
    older = re.search(r'<a href="(/ui/incidents\?[^"]*cursor=[^"]+)" rel="next">', first)
    assert older, "no link to the next page"
    second = api.get(older.group(1).replace("&amp;", "&")).text
    shown = re.findall(r'<a href="/ui/incidents/(inc-[0-9a-f]+)"', first + second)
    assert sorted(shown) == sorted([*ids, gw])
    bad = api.get("/ui/incidents", params={"severity": "urgent"})
    assert bad.status_code == 400 and "severity must be" in bad.text


def test_without_a_session_pages_redirect_to_sign_in(tokens_env, make_app):
    _, api = make_app()
    r = api.get("/ui/incidents?status=open", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=%2Fui%2Fincidents%3Fstatus%3Dopen"
    assert api.get("/ui/rules", follow_redirects=False).status_code == 303
    # The JSON API keeps answering bearer tokens only.
    assert api.get("/api/incidents").status_code == 401
    assert api.get("/api/incidents", headers=bearer("read")).status_code == 200


def test_sign_in_sets_a_strict_http_only_expiring_cookie(tokens_env, make_app):
    _, api = make_app()
    r = sign_in(api, "read", "/ui/rules")
    assert r.status_code == 303 and r.headers["location"] == "/ui/rules"
    cookie = session_cookie(r)
    assert cookie["httponly"] and cookie["samesite"] == "strict"
    assert int(cookie["max-age"]) == 12 * 3600
    assert cookie["path"] == "/ui" and not cookie["secure"]  # plain http, http public URL
    assert TOKENS["read"] not in str(r.headers.get_list("set-cookie"))
    assert api.get("/ui/rules").status_code == 200
    # The session is not a bearer token: the API still refuses it.
    assert api.get("/api/incidents").status_code == 401


@pytest.mark.parametrize(
    "token, status, message",
    [
        ("wrong-token-0123456789abcdef", 401, "not valid"),
        (TOKENS["ingest"], 403, "no read scope"),
    ],
)
def test_sign_in_refuses_bad_and_ingest_tokens(
    tokens_env, make_app, token, status, message, caplog
):
    _, api = make_app()
    form = api.get("/ui/login", params={"next": "/ui/rules"})
    r = api.post(
        "/ui/login",
        data={"token": token, "csrf": form_value(form.text, "csrf"), "next": "/ui/rules"},
    )
    assert r.status_code == status and message in r.text
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    assert form_value(r.text, "next") == "/ui/rules"  # try again, same destination
    assert "page sign-in refused" in caplog.text and token not in caplog.text


def test_sign_in_form_needs_its_csrf_token(tokens_env, make_app):
    _, api = make_app()
    api.get("/ui/login")
    r = api.post("/ui/login", data={"token": TOKENS["admin"], "csrf": "forged"})
    assert r.status_code == 403 and SESSION_COOKIE not in r.headers.get("set-cookie", "")


def test_sign_in_never_redirects_off_site(tokens_env, make_app):
    _, api = make_app()
    for target in ("https://evil.example/", "//evil.example/ui/x", "/ui//evil.example"):
        r = sign_in(api, "read", target)
        assert r.headers["location"] == "/ui/incidents", target


def test_read_scope_cannot_resolve_and_admin_needs_csrf(tokens_env, make_app):
    _, api = make_app()
    incident_id = seed(api, bearer("admin"))
    sign_in(api, "read")
    page = api.get(f"/ui/incidents/{incident_id}")
    assert "Resolving needs an admin token" in page.text
    csrf = form_value(page.text, "csrf")
    r = api.post(f"/ui/incidents/{incident_id}/resolve", data={"csrf": csrf, "note": "x"})
    assert r.status_code == 403
    sign_in(api, "admin")
    page = api.get(f"/ui/incidents/{incident_id}")
    no_csrf = api.post(f"/ui/incidents/{incident_id}/resolve", data={"note": "x"})
    assert no_csrf.status_code == 403
    state = api.get(f"/api/incidents/{incident_id}", headers=bearer("read")).json()
    assert state["status"] == "open"
    r = api.post(
        f"/ui/incidents/{incident_id}/resolve",
        data={"csrf": form_value(page.text, "csrf"), "note": "rolled back <b>a39bf2c</b>"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/ui/incidents/{incident_id}"
    done = api.get(f"/api/incidents/{incident_id}", headers=bearer("read")).json()
    assert (
        done["status"] == "resolved" and done["resolution"]["note"] == "rolled back <b>a39bf2c</b>"
    )
    html = api.get(f"/ui/incidents/{incident_id}").text
    assert "rolled back &lt;b&gt;a39bf2c&lt;/b&gt;" in html


def with_cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={value}"}


def test_forged_expired_and_revoked_sessions_are_refused(tokens_env, make_app):
    state, api = make_app()
    sessions, admin_id = state.sessions, state.tokens.token_id(TOKENS["admin"])
    cookie, _ = sessions.issue("read", state.tokens.token_id(TOKENS["read"]))
    ok = api.get("/ui/incidents", headers=with_cookie(cookie), follow_redirects=False)
    assert ok.status_code == 200
    forged = "admin" + cookie[len("read") :]  # promote itself: the MAC no longer matches
    expired, _ = sessions.issue("admin", admin_id, now=0)
    revoked, _ = sessions.issue("admin", "deadbeef")  # a token no longer configured
    for value in (forged, expired, revoked, "garbage"):
        r = api.get("/ui/incidents", headers=with_cookie(value), follow_redirects=False)
        assert r.status_code == 303, value


def test_replicas_with_the_same_key_accept_each_others_sessions(tokens_env, make_app):
    _, one = make_app()
    _, two = make_app()
    r = sign_in(one, "read")
    cookie = session_cookie(r).value
    r = two.get("/ui/incidents", headers=with_cookie(cookie), follow_redirects=False)
    assert r.status_code == 200


def test_secure_cookie_behind_tls_or_with_an_https_public_url(tokens_env, make_app):
    _, api = make_app(public_url="https://pilot.example.com")
    form = api.get("/ui/login")
    assert "Secure" in form.headers["set-cookie"]
    _, api = make_app()  # an http public URL, but this request came over TLS
    base = "https://incident-pilot.test"
    form = api.get(base + "/ui/login")
    r = api.post(
        base + "/ui/login",
        data={"token": TOKENS["read"], "csrf": form_value(form.text, "csrf")},
        follow_redirects=False,
    )
    assert session_cookie(r)["secure"]
    assert api.get(base + "/ui/incidents", follow_redirects=False).status_code == 200


def test_a_short_or_missing_session_key_file_refuses_to_start(
    tokens_env, make_app, tmp_path, monkeypatch
):
    from engine.web.session import WebSettings

    monkeypatch.delenv("INCIDENT_PILOT_SESSION_KEY")
    short = tmp_path / "short.key"
    short.write_text("too-short\n")
    for path, message in (
        (short, "at least 32 characters"),
        (tmp_path / "none.key", "cannot read"),
    ):
        with pytest.raises(StartupError, match=message):
            make_app(web=WebSettings(session_key_file=str(path)))
    good = tmp_path / "good.key"
    good.write_text(SESSION_KEY + "\n")
    _, api = make_app(web=WebSettings(session_key_file=str(good)))
    assert sign_in(api, "read").status_code == 303


def test_rules_page_counts_firings_and_shows_the_last_reload(api, tmp_path):
    seed(api)
    html = api.get("/ui/rules").text
    row = re.search(r'<tr id="rule-deploy.recent_correlated">(.*?)</tr>', html, re.S)
    assert row and "rules.d/deploy.recent_correlated.yaml" in row.group(1).replace("\\", "/")
    assert re.search(r'<td class="num">1 / 1</td>', row.group(1))  # fired once in 1h / 24h
    assert "Rules as loaded at start" in html
    assert api.post("/-/reload").status_code == 200
    assert "Last reload succeeded" in api.get("/ui/rules").text


def test_deliveries_page_lists_the_outbox_per_incident_and_overall(make_app):
    state, api = make_app()
    incident_id = seed(api)
    wait_for_deliveries(state)
    overall = api.get("/ui/deliveries").text
    assert f'href="/ui/incidents/{incident_id}"' in overall and "stdout" in overall
    assert '<span class="badge delivery delivered">delivered</span>' in overall
    assert "No deliveries." in api.get("/ui/deliveries", params={"status": "dead"}).text
    assert api.get("/ui/deliveries", params={"status": "lost"}).status_code == 400
    page = api.get(f"/ui/incidents/{incident_id}").text
    assert "Deliveries (1)" in page


def test_unknown_records_and_incidents_are_404_pages(api):
    for path in (
        "/ui/incidents/inc-nope",
        "/ui/context/deploys/99",
        "/ui/context/nope/1",
        "/ui/pulls/5/0",
        "/ui/tables/owners/x",
    ):
        r = api.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html")
    assert api.get("/ui/context/deploys/abc").status_code == 400
    assert api.get("/ui/incidents/bad%20id").status_code == 400


def test_a_pull_answer_record_has_a_page(make_app):
    from engine.store.base import NewPull
    from engine.timeutil import utcnow

    state, api = make_app()
    now = utcnow()
    pull = state.store.add_pull(
        NewPull(
            source="prometheus",
            url="http://prometheus.example:9090/api/v1/query_range",
            query='rate(http_requests_total{code=~"5.."}[5m])',
            start=now,
            end=now,
            step=15.0,
            link="http://prometheus.example:9090/graph?g0.expr=x",
            answer={
                "resultType": "matrix",
                "records": [{"metric": {"pod": "<b>api-1</b>"}, "max": 0.09}],
            },
        ),
        now=now,
    )
    r = api.get(f"/ui/pulls/{pull.id}/0")
    assert r.status_code == 200
    assert "rate(http_requests_total{code=~&#34;5..&#34;}[5m])" in r.text
    assert (
        "&lt;b&gt;api-1&lt;/b&gt;" in r.text
        and 'href="http://prometheus.example:9090/graph' in r.text
    )
    assert api.get(f"/ui/pulls/{pull.id}/1").status_code == 404


def test_rules_page_shows_a_failed_reload_against_the_rule_file(make_app, tmp_path):
    import shutil

    from engine.paths import rules_dir

    rules = tmp_path / "rules"
    shutil.copytree(rules_dir(), rules)
    from engine.rulefiles import load_rules

    _, api = make_app(rules=(rules,), ruleset=load_rules([rules]))
    broken = rules / "logs.error_spike.yaml"
    broken.write_text(broken.read_text().replace("source: logs", "source: nowhere"))
    assert api.post("/-/reload").status_code == 422
    html = api.get("/ui/rules").text
    assert "The last reload failed with" in html
    row = re.search(r'<tr id="rule-logs.error_spike">(.*?)</tr>', html, re.S)
    assert row and "errors at the last reload" in row.group(1)
    assert "logs.error_spike.yaml:" in row.group(1)  # the problem, at file:line
    other = re.search(r'<tr id="rule-routing.team">(.*?)</tr>', html, re.S)
    assert other and "<td>ok</td>" in other.group(1)


def test_every_alert_of_an_incident_shows_its_labels_and_source(api):
    first = make_alert(
        service="cart",
        fingerprint="0f0cca7c0ffee001",
        generator_url="http://prometheus.example/graph?g0=1",
    )
    incident_id = api.post("/alerts", json=first).json()["results"][0]["incident"]
    later = make_alert(
        service="cart",
        fingerprint="0f0cca7c0ffee001",
        starts_at="2026-01-01T00:00:00Z",
        pod="<i>cart-7</i>",
        generator_url="javascript:alert(1)",
    )
    r = api.post("/alerts", json=later).json()["results"][0]
    assert (r["outcome"], r["incident"]) == ("attached", incident_id)
    html = api.get(f"/ui/incidents/{incident_id}").text
    table = re.search(r'<table class="list alerts">(.*?)</table>', html, re.S)
    assert table
    rows = re.findall(r"<tr><td>.*?</tr>", table.group(1), re.S)
    assert len(rows) == 2
    assert "<b>pod</b>=&lt;i&gt;cart-7&lt;/i&gt;" in rows[0]  # the later one started earlier
    assert "<code>javascript:alert(1)</code>" in rows[0]
    assert '<a href="http://prometheus.example/graph?g0=1"' in rows[1]


def test_without_tokens_the_pages_are_open_and_forms_still_need_csrf(api):
    incident_id = seed(api)
    assert api.get("/ui/login", follow_redirects=False).status_code == 303  # nothing to sign in to
    page = api.get(f"/ui/incidents/{incident_id}")
    assert session_cookie(page)["httponly"]  # issued on the first page: it carries the nonce
    assert api.post(f"/ui/incidents/{incident_id}/resolve", data={"note": "x"}).status_code == 403
    r = api.post(
        f"/ui/incidents/{incident_id}/resolve",
        data={"csrf": form_value(page.text, "csrf"), "note": "done"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert api.get(f"/api/incidents/{incident_id}").json()["resolution"]["note"] == "done"


def test_tokens_without_a_session_key_warn_and_use_a_random_one(make_app, monkeypatch, caplog):
    monkeypatch.setenv("INCIDENT_PILOT_TOKENS", TOKENS_ENV)
    monkeypatch.delenv("INCIDENT_PILOT_SESSION_KEY", raising=False)
    with caplog.at_level("WARNING", logger="incident_pilot"):
        _, one = make_app()
        _, two = make_app()
    assert "no session key configured" in caplog.text
    cookie = session_cookie(sign_in(one, "read")).value
    r = two.get("/ui/incidents", headers=with_cookie(cookie), follow_redirects=False)
    assert r.status_code == 303  # another process's random key: its sessions are not valid here


def test_a_failing_store_gives_an_error_page_not_a_traceback(make_app, caplog):
    state, api = make_app()
    incident_id = seed(api)
    state.store.close()  # every read now fails
    r = api.get(f"/ui/incidents/{incident_id}")
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert "could not answer this page" in r.text and "Traceback" not in r.text
    assert r.headers["x-frame-options"] == "DENY"
    assert "page GET /ui/incidents/" in caplog.text


def test_a_table_entry_has_a_page(api):
    r = api.get("/ui/tables/ownership/checkout-api")
    assert r.status_code == 200
    assert "payments" in r.text and "#payments-oncall" in r.text
    assert "rules.d/ownership.yaml" in r.text.replace("\\", "/")
    assert 'href="/api/tables/ownership/checkout-api"' in r.text
    assert api.get("/ui/tables/ownership/nobody").status_code == 404


def test_ownership_evidence_links_to_the_table_entry(api):
    r = api.post("/alerts", json=make_alert(service="checkout-api"))
    html = api.get(f"/ui/incidents/{r.json()['results'][0]['incident']}").text
    assert 'class="evidence-link" href="/ui/tables/ownership/checkout-api"' in html


@pytest.mark.slow
def test_resolving_while_the_store_cannot_commit_is_a_503_page(make_app, tmp_path):
    from tests.faults import sqlite_write_lock

    db = str(tmp_path / "locked.db")
    state, api = make_app(db=db)
    incident_id = seed(api)
    page = api.get(f"/ui/incidents/{incident_id}")
    with sqlite_write_lock(db):  # another process holds the write lock past the busy timeout
        r = api.post(
            f"/ui/incidents/{incident_id}/resolve",
            data={"csrf": form_value(page.text, "csrf"), "note": "x"},
        )
    assert r.status_code == 503 and r.headers["retry-after"] == "10"
    assert r.headers["content-type"].startswith("text/html") and "try again" in r.text
    assert api.get(f"/api/incidents/{incident_id}").json()["status"] == "open"
    assert state.faults.reason.startswith("locked")  # recorded for /readyz, as the API does


def test_the_session_key_is_scrubbed_like_every_secret(tokens_env, make_app):
    state, _ = make_app()
    scrubbed = state.delivery.redactor.scrub(f"oops: key={SESSION_KEY}!")
    assert SESSION_KEY not in scrubbed and "***" in scrubbed
