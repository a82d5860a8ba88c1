"""The pages in a real browser: Debian's Chromium driven by Playwright, against a live
server on loopback with tokens configured.

Sign in, list, open the README demo's incident, read its findings, evidence and timeline,
follow an evidence link, resolve it with a note, see it resolved in the list; a hostile
alert renders as text and runs nothing; no session means the sign-in page; the pages fit
1280 px and a phone's width; an admin re-sends a dead letter from the deliveries page. Screenshots of the main pages go to the test's tmp dir (and,
when INCIDENT_PILOT_SCREENSHOTS is set, to that directory: how docs/*.png are refreshed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.testing import ServerProcess
from engine.timeutil import format_ts, utcnow

from .helpers import HOSTILE, SESSION_KEY, TOKENS, TOKENS_ENV, bearer, hostile_alert

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000
DOC_SHOTS = {"incidents", "incident", "incident-phone"}  # the ones README.md shows

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium "
        "(.ci/run does it)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"INCIDENT_PILOT_TOKENS": TOKENS_ENV, "INCIDENT_PILOT_SESSION_KEY": SESSION_KEY}
    with ServerProcess(tmp_path_factory.mktemp("browser"), "--quiet", env=env) as srv:
        yield srv


@pytest.fixture(scope="module")
def demo(server: ServerProcess) -> dict[str, str]:
    """The README demo (a deploy 3 minutes ago, 10 ERROR lines, examples/sample_alert.json)
    and a hostile alert, sent over HTTP with an ingest token."""
    with server.client() as client:
        deploy = {
            "service": "api-gateway",
            "commit": "a39bf2c",
            "author": "alice",
            "when": format_ts(utcnow() - timedelta(minutes=3)),
        }
        r = client.post("/context/deploys", json=deploy, headers=bearer("ingest"))
        assert r.status_code == 200, r.text
        for i in range(1, 11):
            log = {
                "service": "api-gateway",
                "level": "ERROR",
                "message": f"upstream timeout request {i}",
            }
            assert (
                client.post("/context/logs", json=log, headers=bearer("ingest")).status_code == 200
            )
        body = json.loads((ROOT / "examples" / "sample_alert.json").read_text())
        r = client.post("/alerts", json=body, headers=bearer("ingest"))
        demo_id = r.json()["results"][0]["incident"]
        r = client.post("/alerts", json=hostile_alert(), headers=bearer("ingest"))
        hostile_id = r.json()["results"][0]["incident"]
    return {"demo": demo_id, "hostile": hostile_id}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


class Watch:
    """What a page did that it must not: dialogs (an injected alert()), uncaught errors,
    CSP violations reported on the console."""

    def __init__(self, page: Any) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._console)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)

    def assert_clean(self) -> None:
        assert self.dialogs == [], f"a script ran: {self.dialogs}"
        assert self.errors == [], f"errors in the page: {self.errors}"


def open_page(browser: Any, viewport: dict[str, int] = DESKTOP) -> tuple[Any, Any, Watch]:
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    return context, page, Watch(page)


def shoot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 1000
    keep = os.environ.get("INCIDENT_PILOT_SCREENSHOTS")
    if keep and name in DOC_SHOTS:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)


def sign_in(page: Any, server: ServerProcess, scope: str, path: str = "/ui/incidents") -> None:
    page.goto(server.url + path)
    assert "/ui/login" in page.url
    page.get_by_label("Token").fill(TOKENS[scope])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}")


def fits(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_sign_in_read_follow_evidence_and_resolve(browser, server, demo, tmp_path) -> None:
    context, page, watch = open_page(browser)
    try:
        sign_in(page, server, "admin")
        assert page.get_by_role("heading", name="Incidents").is_visible()
        row = page.get_by_role("row").filter(has_text="5xx rate above 5% on api-gateway")
        assert row.get_by_text("open", exact=True).is_visible()
        assert row.get_by_text("edge").is_visible()
        assert fits(page)
        shoot(page, tmp_path, "incidents")

        row.get_by_role("link", name="5xx rate above 5% on api-gateway").click()
        page.wait_for_url(f"**/ui/incidents/{demo['demo']}")
        findings = page.locator("article.finding")
        assert findings.count() >= 3
        deploy = findings.filter(has_text="deploy.recent_correlated")
        assert "commit a39bf2c by alice" in deploy.inner_text()
        assert deploy.locator(
            "code", has_text="kubectl rollout undo deployment/api-gateway"
        ).is_visible()
        # The timeline: the alert, the deploy before it, the ERROR bins; each a link.
        svg = page.locator("svg.timeline")
        assert svg.is_visible()
        assert svg.locator("a.mark-alert").count() == 1
        assert svg.locator("a.mark-deploy").count() == 1
        # Each mark is a link a screen reader can reach, named by its tooltip.
        assert svg.get_by_role("link", name="deploy a39bf2c alice").is_visible()
        bins = svg.locator("a.mark-errors")
        assert bins.count() >= 1
        assert all(
            (bins.nth(i).get_attribute("href") or "").startswith("/ui/context/logs/")
            for i in range(bins.count())
        )
        deploy_x = float(svg.locator("a.mark-deploy line").get_attribute("x1") or 0)
        alert_x = float(svg.locator("a.mark-alert line").get_attribute("x1") or 0)
        assert deploy_x < alert_x  # deploy, then the alert
        generator = page.get_by_role("link", name="Open the alert's source (generatorURL)")
        assert (
            generator.get_attribute("href") == "http://prometheus.example:9090/graph?g0.expr=rate"
        )
        assert fits(page)
        shoot(page, tmp_path, "incident")
        deploy.get_by_role("button", name="Copy").first.click()  # app.js runs under the CSP
        page.wait_for_function(
            "!![...document.querySelectorAll('button.copy')].find(b => b.textContent !== 'Copy')"
        )

        deploy.get_by_role("link", name="context/deploys/1").click()
        page.wait_for_url("**/ui/context/deploys/1")
        assert page.get_by_role("row", name="commit a39bf2c").is_visible()
        shoot(page, tmp_path, "evidence")
        page.go_back()

        page.get_by_label("Note").fill("rolled back a39bf2c")
        page.get_by_role("button", name="Resolve incident").click()
        page.wait_for_url(f"**/ui/incidents/{demo['demo']}")
        assert page.locator("#status").inner_text() == "resolved"
        assert "rolled back a39bf2c" in page.locator("#resolution").inner_text()

        page.get_by_role("link", name="Incidents", exact=True).click()
        page.get_by_label("Status").select_option("resolved")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**status=resolved**")
        row = page.get_by_role("row").filter(has_text="5xx rate above 5% on api-gateway")
        assert row.get_by_text("resolved", exact=True).is_visible()

        page.get_by_role("link", name="Rules").click()
        assert page.get_by_role("row").filter(has_text="logs.error_spike").is_visible()
        shoot(page, tmp_path, "rules")
        page.get_by_role("link", name="Deliveries").click()
        assert page.get_by_role("heading", name="Deliveries").is_visible()
        shoot(page, tmp_path, "deliveries")
        watch.assert_clean()
    finally:
        context.close()


def test_hostile_alert_renders_as_text_and_runs_nothing(browser, server, demo, tmp_path) -> None:
    context, page, watch = open_page(browser)
    try:
        sign_in(page, server, "read", f"/ui/incidents/{demo['hostile']}")
        labels = page.locator("table.labels")
        assert labels.get_by_role("row", name=f"evil {HOSTILE}").is_visible()
        assert page.locator("main img").count() == 0
        assert page.locator("main script").count() == 0
        assert page.get_by_role("link", name="Open the alert's source (generatorURL)").count() == 0
        assert "Resolving needs an admin token" in page.inner_text("main")
        page.goto(server.url + "/ui/incidents?q=hostile")
        assert page.get_by_role("link", name=f"hostile {HOSTILE}").is_visible()
        page.wait_for_timeout(300)  # an onerror handler would have fired by now
        watch.assert_clean()
    finally:
        context.close()


def test_without_a_session_every_page_redirects_to_sign_in(browser, server, demo) -> None:
    context, page, _watch = open_page(browser)
    try:
        for path in (f"/ui/incidents/{demo['demo']}", "/ui/rules", "/ui/deliveries", "/"):
            page.goto(server.url + path)
            assert "/ui/login" in page.url, path
            assert page.get_by_label("Token").is_visible()
        page.get_by_label("Token").fill("not-a-valid-token-at-all")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text() == "That token is not valid."
        # The JSON API still wants a bearer token, session or not.
        r = httpx.get(server.url + "/api/incidents", timeout=10)
        assert r.status_code == 401
    finally:
        context.close()


def test_pages_fit_a_phone_screen(browser, server, demo, tmp_path) -> None:
    context, page, watch = open_page(browser, PHONE)
    try:
        sign_in(page, server, "read")
        assert fits(page)
        shoot(page, tmp_path, "incidents-phone")
        page.goto(server.url + f"/ui/incidents/{demo['demo']}")
        assert fits(page)
        box = page.locator(".timeline-box").bounding_box()
        assert box and box["width"] <= PHONE["width"]  # the timeline scrolls inside its box
        assert page.locator("svg.timeline").bounding_box()["width"] >= 600  # text stays legible
        assert page.locator("svg.timeline a.mark-alert").is_visible()
        alert_box = page.locator("svg.timeline a.mark-alert line").bounding_box()
        assert alert_box and 0 <= alert_box["x"] <= PHONE["width"]  # in view: scrolled to the alert
        shoot(page, tmp_path, "incident-phone")
        watch.assert_clean()
    finally:
        context.close()


def test_admin_retries_a_dead_letter_in_the_browser(browser, tmp_path) -> None:
    from .test_retry_page import Receiver

    receiver = Receiver()
    config = tmp_path / "delivery.yaml"
    config.write_text(
        "delivery: {base_delay: 20ms, max_delay: 100ms, poll_interval: 50ms}\n"
        f"sinks:\n  hook: {{type: webhook, url: '{receiver.url}', secret_env: HOOK_SECRET, timeout: 2s}}\n"
        "routes:\n  default: [{sink: hook}]\n"
    )
    env = {
        "INCIDENT_PILOT_TOKENS": TOKENS_ENV,
        "INCIDENT_PILOT_SESSION_KEY": SESSION_KEY,
        "HOOK_SECRET": "hook-secret-0123456789abcdef",
    }
    try:
        with ServerProcess(tmp_path / "srv", "--quiet", "--config", str(config), env=env) as srv:
            alert = {"labels": {"alertname": "Down", "service": "checkout"}, "annotations": {}}
            r = httpx.post(srv.url + "/alerts", json=alert, headers=bearer("ingest"), timeout=10)
            assert r.status_code == 200, r.text
            context, page, watch = open_page(browser)
            try:
                sign_in(page, srv, "admin", "/ui/deliveries?status=dead")
                row = page.get_by_role("row").filter(has_text="hook")
                for _ in range(100):  # a 401 is not retried: dead within a few polls
                    if row.count():
                        break
                    page.wait_for_timeout(100)
                    page.reload()
                assert "HTTP 401" in row.inner_text()
                receiver.refuse = False
                row.get_by_role("button", name=re.compile(r"Re-send delivery \d+")).click()
                page.wait_for_url("**/ui/deliveries?status=dead")
                page.goto(srv.url + "/ui/deliveries?sink=hook")
                delivered = page.locator("tr.delivery-delivered")
                for _ in range(100):
                    if delivered.count():
                        break
                    page.wait_for_timeout(100)
                    page.reload()
                assert delivered.count() == 1 and receiver.received == 2
                watch.assert_clean()
            finally:
                context.close()
    finally:
        receiver.close()
