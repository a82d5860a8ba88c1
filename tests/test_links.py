"""Links in what the rules write: `public_url` and the `incident_url` filter follow
--public-url, and no shipped rule or template names a host or port of its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from engine.alerts import parse_alert
from engine.rules.loader import load_ruleset
from engine.rules.ruleset import RuleSet
from engine.testing import make_alert, make_webhook
from engine.timeutil import utcnow

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = "https://pilot.example.org/ops/"
PAGE_BASE = "https://pilot.example.org/ops/ui/incidents/"

# A host written into a template: a URL, localhost, an IP address, or name:port.
HARD_CODED_HOST = re.compile(
    r"[a-z][a-z0-9+.-]*://[^\s/`'\"]+"
    r"|\blocalhost\b"
    r"|\b\d{1,3}(?:\.\d{1,3}){3}\b"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*:\d{2,5}\b(?![:\d])",
    re.IGNORECASE,
)
# Names RFC 2606 keeps for examples may appear in a rule test's data; an XML namespace
# (`xmlns="http://www.w3.org/2000/svg"` in an SVG) is a name, not a link.
EXAMPLE_HOSTS = re.compile(
    r"://[^/\s]*\bexample\.(?:com|org|net)\b|://[^/\s]*\.example\b|^http://www\.w3\.org$"
)


def _shipped_files() -> list[Path]:
    return sorted(p for d in ("rules.d", "templates") for p in (ROOT / d).rglob("*") if p.is_file())


def test_the_scan_finds_hard_coded_hosts() -> None:
    for text in (
        "`curl -s localhost:9099/api/incidents/{{ first.id }}`",
        "see http://10.0.0.7/x",
        "open https://incident-pilot.internal/ui",
        "grafana.internal:3000/d/abc",
        "curl 192.168.1.20:8080",
    ):
        assert HARD_CODED_HOST.search(text), text
    for text in ("at 2026-01-01T12:00:00Z", "{{ first.id | incident_url }}", "{{ public_url }}/ui"):
        assert not HARD_CODED_HOST.search(text), text


@pytest.mark.parametrize("path", _shipped_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shipped_rule_or_template_hard_codes_a_host(path: Path) -> None:
    found = [
        (n, m.group())
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        for m in HARD_CODED_HOST.finditer(line)
        if not EXAMPLE_HOSTS.search(m.group())
    ]
    assert found == [], f"{path.relative_to(ROOT)}: write {{{{ public_url }}}} or incident_url"


def _rule_dir(tmp_path: Path) -> RuleSet:
    (tmp_path / "links.yaml").write_text(
        "id: t.links\n"
        "description: links to another incident and to the service\n"
        "source: alert\n"
        "fire_when: always\n"
        "summary: >-\n"
        "  related {{ alert.labels.related | incident_url }};\n"
        "  every incident at {{ public_url }}/ui/incidents\n"
        "evidence: {alert: labels.related}\n",
        encoding="utf-8",
    )
    ruleset, problems = load_ruleset([tmp_path])
    assert not [p for p in problems if p.level == "error"], problems
    return ruleset


def test_rule_templates_get_the_public_url(make_app: Any, tmp_path: Path) -> None:
    _, client = make_app(ruleset=_rule_dir(tmp_path), public_url=PUBLIC)
    alert = make_alert(service="checkout-api", related="inc-0123456789ab")
    iid = client.post("/alerts", json=make_webhook(alert)).json()["results"][0]["incident"]
    [finding] = client.get(f"/api/incidents/{iid}").json()["findings"]
    assert finding["summary"] == (
        f"related {PAGE_BASE}inc-0123456789ab; every incident at https://pilot.example.org/ops/ui/incidents"
    )


def test_without_a_public_url_the_link_is_the_page_path(tmp_path: Path) -> None:
    """Offline (replay, test-rules, lint): the path alone, never a made-up host."""
    from engine.rules.evaluate import evaluate_rules
    from engine.store import open_store

    ruleset = _rule_dir(tmp_path)
    now = utcnow()
    store = open_store(":memory:")
    try:
        alert = parse_alert(make_alert(service="x", related="inc-1", starts_at=now), "alert", now)
        [finding] = evaluate_rules(ruleset, alert, store).findings
    finally:
        store.close()
    assert finding.summary == "related /ui/incidents/inc-1; every incident at /ui/incidents"


def test_duplicate_open_links_the_first_incident_under_the_public_url(make_app: Any) -> None:
    state, client = make_app(public_url=PUBLIC)
    first = make_alert(service="checkout-api", pod="a")
    iid = client.post("/alerts", json=make_webhook(first)).json()["results"][0]["incident"]
    now = utcnow()
    second = parse_alert(make_alert(service="checkout-api", pod="b", starts_at=now), "alert", now)
    result = state.pipeline.handle(second)  # the server's own pipeline, as POST /alerts runs it
    assert result.outcome.kind == "attached" and result.evaluation is not None
    [dup] = [f for f in result.evaluation.findings if f.rule_id == "incident.duplicate_open"]
    assert f"{PAGE_BASE}{iid}" in dup.suggestion
    assert f"`incident-pilot incidents show {iid}`" in dup.suggestion
    assert "localhost" not in dup.suggestion


def test_public_url_is_a_reserved_name(tmp_path: Path) -> None:
    (tmp_path / "shadow.yaml").write_text(
        "id: t.shadow\ndescription: d\nsource: alert\nfire_when: always\n"
        "let:\n  public_url:\n    - then: http://elsewhere.example\n"
        "summary: '{{ public_url }}'\nevidence: {alert: labels.alertname}\n",
        encoding="utf-8",
    )
    _, problems = load_ruleset([tmp_path])
    assert any("public_url" in str(p) and p.level == "error" for p in problems), problems
