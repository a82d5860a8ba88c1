"""Deploy webhooks: GitHub, GitLab and Argo CD bodies become the deploy record
`/context/deploys` stores, each provider authenticated by its own signature or token, and
`deploy.recent_correlated` cites the deploy on the next alert for the mapped service."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.adapters.deploy_config import load_hooks
from engine.adapters.deploy_services import load_service_table
from engine.server.auth import required_scope
from engine.server.hooks import github_signature
from engine.server.settings import ServeSettings
from engine.server.state import StartupError
from engine.testing import ServerError, make_alert, make_webhook, open_app
from engine.timeutil import format_ts, parse_ts
from tests.ops.helpers import TOKENS, TOKENS_ENV, bearer, ops_server

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
GITHUB_SECRET = "github-webhook-secret-0123456789"
GITLAB_TOKEN = "gitlab-webhook-token-0123456789"
ARGOCD_TOKEN = "argocd-webhook-token-0123456789"
SECRETS_ENV = {
    "INCIDENT_PILOT_GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    "INCIDENT_PILOT_GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN,
    "INCIDENT_PILOT_ARGOCD_WEBHOOK_TOKEN": ARGOCD_TOKEN,
}
SERVICES = """\
services:
  - {repository: Codertocat/Hello-World, service: checkout-api}
  - {repository: root/test-deployment-webhooks, environment: production, service: billing}
  - {repository: root/test-deployment-webhooks, service: billing-staging}
  - {application: guestbook, service: guestbook-web}
"""


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def github_headers(body: bytes, event: str = "deployment_status", **extra: str) -> dict:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "X-Hub-Signature-256": github_signature(GITHUB_SECRET, body),
        **extra,
    }


GITLAB = {
    "Content-Type": "application/json",
    "X-Gitlab-Event": "Deployment Hook",
    "X-Gitlab-Token": GITLAB_TOKEN,
}
ARGOCD = {"Content-Type": "application/json", "Authorization": f"Bearer {ARGOCD_TOKEN}"}


@pytest.fixture
def services_file(tmp_path: Path) -> Path:
    path = tmp_path / "deploy-services.yaml"
    path.write_text(SERVICES)
    return path


@pytest.fixture
def hooks(
    make_app: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, services_file: Path
) -> Callable[..., Any]:
    """hooks(secrets=True, tokens=False, **settings) -> (state, client)."""

    def make(secrets: bool = True, tokens: bool = False, **settings: Any) -> Any:
        for name, value in SECRETS_ENV.items():
            if secrets:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)
        if tokens:
            monkeypatch.setenv("INCIDENT_PILOT_TOKENS", TOKENS_ENV)
        else:
            monkeypatch.delenv("INCIDENT_PILOT_TOKENS", raising=False)
        settings.setdefault("deploy_services", str(services_file))
        return make_app(**settings)

    return make


def stored(client: Any, answer: httpx.Response, **headers: str) -> dict:
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 1, answer.json()
    [record_id] = answer.json()["ids"]
    record = client.get(f"/api/context/deploys/{record_id}", headers=headers)
    assert record.status_code == 200, record.text
    return dict(record.json())


# --- each provider's fixture -> the deploy record ------------------------------------


def test_github_deployment_status_becomes_the_deploy_record(hooks) -> None:
    _, client = hooks()
    body = fixture("github-deployment_status-success.json")
    answer = client.post("/hooks/github", content=body, headers=github_headers(body))
    record = stored(client, answer)
    assert record == {
        "id": record["id"],
        "kind": "deploys",
        "path": f"context/deploys/{record['id']}",
        "service": "checkout-api",  # Codertocat/Hello-World through the table
        "ts": "2019-05-15T15:20:55Z",  # deployment_status.updated_at
        "commit": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        "author": "Codertocat",
        "attributes": {
            "source": "github",
            "repository": "Codertocat/Hello-World",
            "environment": "production",
            "ref": "master",
        },
    }
    assert "checkout-api" in answer.json()["note"]


def test_github_url_is_the_target_url_else_the_environment_url(hooks) -> None:
    _, client = hooks()
    event = json.loads(fixture("github-deployment_status-success.json"))
    event["deployment_status"]["environment_url"] = "https://shop.example.com"
    body = json.dumps(event).encode()
    record = stored(
        client, client.post("/hooks/github", content=body, headers=github_headers(body))
    )
    assert record["attributes"]["url"] == "https://shop.example.com"
    event["deployment_status"]["target_url"] = "https://ci.example.com/runs/1"
    body = json.dumps(event).encode()
    record = stored(
        client, client.post("/hooks/github", content=body, headers=github_headers(body))
    )
    assert record["attributes"]["url"] == "https://ci.example.com/runs/1"


def test_an_unmapped_github_repository_keeps_its_name(hooks) -> None:
    _, client = hooks(deploy_services="")
    body = fixture("github-deployment_status-success.json")
    answer = client.post("/hooks/github", content=body, headers=github_headers(body))
    assert stored(client, answer)["service"] == "Hello-World"


def test_gitlab_deployment_event_becomes_the_deploy_record(hooks) -> None:
    _, client = hooks()
    answer = client.post(
        "/hooks/gitlab", content=fixture("gitlab-deployment-success.json"), headers=GITLAB
    )
    record = stored(client, answer)
    assert record["service"] == "billing-staging"  # environment staging: the catch-all entry
    assert record["ts"] == "2021-04-28T19:50:00Z"  # "2021-04-28 21:50:00 +0200"
    assert record["commit"] == "279484c09fbe69ededfced8c1bb6e6d24616b468"  # from commit_url
    assert record["author"] == "root"
    assert record["attributes"] == {
        "source": "gitlab",
        "repository": "root/test-deployment-webhooks",
        "environment": "staging",
        "url": "http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796",
    }


def test_gitlab_environment_specific_mapping_and_short_sha_fallback(hooks) -> None:
    _, client = hooks()
    event = json.loads(fixture("gitlab-deployment-success.json"))
    event["environment"] = "production"
    del event["commit_url"], event["deployable_url"]
    record = stored(client, client.post("/hooks/gitlab", json=event, headers=GITLAB))
    assert record["service"] == "billing"
    assert record["commit"] == "279484c0"
    assert record["attributes"]["url"] == "https://staging.example.com"


def test_argocd_notification_becomes_the_deploy_record(hooks) -> None:
    _, client = hooks()
    answer = client.post(
        "/hooks/argocd", content=fixture("argocd-app-deployed.json"), headers=ARGOCD
    )
    record = stored(client, answer)
    assert record["service"] == "guestbook-web"
    assert record["commit"] == "53e28ff20cc530b9ada2173fbbd64d48338583ba"
    assert record["author"] == "admin"
    assert record["ts"] == "2024-05-02T09:14:07Z"
    assert record["attributes"] == {
        "source": "argocd",
        "application": "guestbook",
        "project": "default",
        "repository": "https://github.com/argoproj/argocd-example-apps.git",
        "destination": "https://kubernetes.default.svc/guestbook",
        "url": "https://argocd.example.com/applications/guestbook",
    }


def test_argocd_fields_the_template_could_not_fill_count_as_absent(hooks) -> None:
    _, client = hooks(deploy_services="")
    event = json.loads(fixture("argocd-app-deployed.json"))
    event.update(author="<no value>", finishedAt="", app="other-app")
    record = stored(client, client.post("/hooks/argocd", json=event, headers=ARGOCD))
    assert record["service"] == "other-app"  # unmapped: the application name
    assert record["author"] == "unknown"


def test_a_webhook_deploy_is_the_same_record_as_context_deploys(hooks) -> None:
    _, client = hooks()
    body = fixture("github-deployment_status-success.json")
    hooked = stored(
        client, client.post("/hooks/github", content=body, headers=github_headers(body))
    )
    plain = client.post(
        "/context/deploys",
        json={
            "service": "checkout-api",
            "commit": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
            "author": "Codertocat",
            "when": "2019-05-15T15:20:55Z",
            "attributes": hooked["attributes"],
        },
    )
    direct = stored(client, plain)
    for key in ("id", "path"):
        del hooked[key], direct[key]
    assert hooked == direct


# --- acknowledged, not stored ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "event", "said"),
    [
        ("github-ping.json", "ping", "ping received"),
        ("github-deployment_status-in_progress.json", "deployment_status", "'in_progress'"),
        ("github-deployment_status-success.json", "push", "'push' events are not stored"),
    ],
)
def test_other_github_events_are_acknowledged_and_not_stored(hooks, name, event, said) -> None:
    state, client = hooks()
    body = fixture(name)
    answer = client.post("/hooks/github", content=body, headers=github_headers(body, event))
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 0 and answer.json()["ids"] == []
    assert said in answer.json()["note"]
    assert state.store.stats()["context"]["deploys"] == 0


def test_other_gitlab_events_and_statuses_are_acknowledged_and_not_stored(hooks) -> None:
    _, client = hooks()
    event = json.loads(fixture("gitlab-deployment-success.json"))
    event["status"] = "running"
    answer = client.post("/hooks/gitlab", json=event, headers=GITLAB)
    assert answer.status_code == 200 and answer.json()["accepted"] == 0
    assert "'running' is not stored" in answer.json()["note"]
    answer = client.post(
        "/hooks/gitlab",
        json={"object_kind": "push"},
        headers={**GITLAB, "X-Gitlab-Event": "Push Hook"},
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 0
    assert "'Push Hook' events are not stored" in answer.json()["note"]


# --- authentication -------------------------------------------------------------------


def test_github_signature_failures_are_401(hooks) -> None:
    state, client = hooks()
    body = fixture("github-deployment_status-success.json")
    good = github_headers(body)
    cases = {
        "missing": {k: v for k, v in good.items() if k != "X-Hub-Signature-256"},
        "wrong secret": {
            **good,
            "X-Hub-Signature-256": github_signature("another-secret-xx", body),
        },
        "another body": {**good, "X-Hub-Signature-256": github_signature(GITHUB_SECRET, b"{}")},
        "sha1 only": {**good, "X-Hub-Signature-256": "sha1=" + "0" * 40},
        "not hex": {**good, "X-Hub-Signature-256": "sha256=zz\u00e9".encode("latin-1")},
    }
    for case, headers in cases.items():
        answer = client.post("/hooks/github", content=body, headers=headers)
        assert answer.status_code == 401, (case, answer.text)
        assert "X-Hub-Signature-256" in answer.json()["error"]
    tampered = body.replace(b"Codertocat/Hello-World", b"Codertocat/Other-Repo")
    assert client.post("/hooks/github", content=tampered, headers=good).status_code == 401
    assert state.store.stats()["context"]["deploys"] == 0


def test_gitlab_and_argocd_token_failures_are_401(hooks) -> None:
    state, client = hooks()
    gitlab = fixture("gitlab-deployment-success.json")
    argocd = fixture("argocd-app-deployed.json")
    for headers in (
        {k: v for k, v in GITLAB.items() if k != "X-Gitlab-Token"},
        {**GITLAB, "X-Gitlab-Token": GITLAB_TOKEN + "x"},
        {**GITLAB, "X-Gitlab-Token": GITHUB_SECRET},
    ):
        assert client.post("/hooks/gitlab", content=gitlab, headers=headers).status_code == 401
    for headers in (
        {"Content-Type": "application/json"},
        {**ARGOCD, "Authorization": "Basic " + ARGOCD_TOKEN},
        {**ARGOCD, "Authorization": "Bearer wrong-token-0123456789"},
        {**ARGOCD, "Authorization": f"Bearer {TOKENS['admin']}"},  # an API token is not it
    ):
        answer = client.post("/hooks/argocd", content=argocd, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert state.store.stats()["context"]["deploys"] == 0


def test_a_receiver_without_its_secret_is_off(hooks) -> None:
    _, client = hooks(secrets=False)
    body = fixture("github-deployment_status-success.json")
    for path, headers in (
        ("/hooks/github", github_headers(body)),
        ("/hooks/gitlab", GITLAB),
        ("/hooks/argocd", ARGOCD),
    ):
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code == 404, answer.text
        assert "webhook is off" in answer.json()["error"]
        assert "INCIDENT_PILOT_" in answer.json()["error"]


def test_hooks_skip_the_bearer_check_but_always_need_their_own_signature(hooks) -> None:
    """With API tokens configured, /hooks/* is exempt from the bearer check (GitHub and
    GitLab cannot send one) and still refuses anything its own secret did not sign."""
    for path in ("/hooks/github", "/hooks/gitlab", "/hooks/argocd"):
        assert required_scope("POST", path, metrics_auth=True) is None
    assert required_scope("POST", "/context/deploys", metrics_auth=False) == "ingest"
    _, client = hooks(tokens=True)
    body = fixture("github-deployment_status-success.json")
    unsigned = {k: v for k, v in github_headers(body).items() if k != "X-Hub-Signature-256"}
    for scope in ("ingest", "admin"):
        answer = client.post("/hooks/github", content=body, headers={**unsigned, **bearer(scope)})
        assert answer.status_code == 401, answer.text
    answer = client.post("/hooks/github", content=body, headers=github_headers(body))
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    # ... while the plain JSON path still needs its bearer token.
    assert client.post("/context/deploys", json={"service": "s", "commit": "c"}).status_code == 401
    # Without API tokens (auth off) the receivers are not open either.
    _, open_client = hooks(tokens=False)
    assert open_client.post("/hooks/github", content=body, headers=unsigned).status_code == 401


# --- bad input: 4xx with a clear message, never a 500 ---------------------------------


def _signed(client: Any, body: bytes, event: str = "deployment_status", **h: str) -> httpx.Response:
    return client.post("/hooks/github", content=body, headers=github_headers(body, event, **h))


def test_bad_github_bodies_are_4xx(hooks) -> None:
    state, client = hooks()
    good = json.loads(fixture("github-deployment_status-success.json"))

    def without(*path: str) -> bytes:
        event = json.loads(json.dumps(good))
        node = event
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
        return json.dumps(event).encode()

    def with_value(value: Any, *path: str) -> bytes:
        event = json.loads(json.dumps(good))
        node = event
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return json.dumps(event).encode()

    cases = [
        (b'{"deployment": ', 400, "malformed JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'"text"', 400, "must be a JSON object"),
        (b"", 400, "empty"),
        (b'{"zen": "Design for failure.", "hook_id": 1}', 400, "not a deployment"),
        (without("deployment", "sha"), 400, "deployment.sha"),
        (with_value("", "deployment", "sha"), 400, "deployment.sha"),
        (with_value(12, "deployment", "sha"), 400, "deployment.sha: must be a string"),
        (with_value("x" * 300, "deployment", "sha"), 400, "the limit is 256"),
        (with_value([], "deployment"), 400, "deployment: must be an object"),
        (without("repository"), 400, "repository"),
        (with_value("yesterday", "deployment_status", "updated_at"), 400, "RFC 3339"),
        (with_value("2999-01-01T00:00:00Z", "deployment_status", "updated_at"), 400, "future"),
        (with_value(None, "deployment_status", "state"), 400, "deployment_status.state"),
        (with_value("a\u0000b", "deployment", "sha"), 400, "NUL"),
    ]
    for body, status, said in cases:
        answer = _signed(client, body)
        assert answer.status_code == status, (body[:60], answer.text)
        assert said in answer.json()["error"], (said, answer.json())
    answer = _signed(
        client, b"payload=%7B%7D", **{"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 415 and "application/json" in answer.json()["error"]
    answer = client.post(
        "/hooks/github",
        content=b"{}",
        headers={k: v for k, v in github_headers(b"{}").items() if k != "X-GitHub-Event"},
    )
    assert answer.status_code == 400 and "X-GitHub-Event" in answer.json()["error"]
    assert state.store.stats()["context"]["deploys"] == 0


def test_huge_bodies_are_413_before_the_signature_is_checked(hooks) -> None:
    _, client = hooks(max_body=64 * 1024)
    huge = b'{"pad": "' + b"x" * (100 * 1024) + b'"}'
    for path, headers in (
        ("/hooks/github", github_headers(huge)),
        ("/hooks/gitlab", GITLAB),
        ("/hooks/argocd", ARGOCD),
    ):
        answer = client.post(path, content=huge, headers=headers)
        assert answer.status_code == 413, answer.text


def test_bad_gitlab_and_argocd_bodies_are_4xx(hooks) -> None:
    _, client = hooks()
    gitlab = json.loads(fixture("gitlab-deployment-success.json"))
    cases = [
        ({**gitlab, "object_kind": "pipeline"}, "object_kind"),
        ({k: v for k, v in gitlab.items() if k not in ("commit_url", "short_sha")}, "short_sha"),
        ({**gitlab, "project": "root/x"}, "project: must be an object"),
        ({**gitlab, "status_changed_at": "last tuesday"}, "status_changed_at"),
        ({**gitlab, "user": {"username": 7}}, "user.username"),
    ]
    for body, said in cases:
        answer = client.post("/hooks/gitlab", json=body, headers=GITLAB)
        assert answer.status_code == 400, answer.text
        assert said in answer.json()["error"]
    assert client.post("/hooks/gitlab", content=b"{", headers=GITLAB).status_code == 400
    argocd = json.loads(fixture("argocd-app-deployed.json"))
    for body, said in (
        ({**argocd, "revision": ""}, "revision"),
        ({**argocd, "revision": "<no value>"}, "revision"),
        ({k: v for k, v in argocd.items() if k != "app"}, "app"),
        ({**argocd, "destination": "in-cluster"}, "destination"),
        ([argocd], "must be a JSON object"),
    ):
        answer = client.post("/hooks/argocd", json=body, headers=ARGOCD)
        assert answer.status_code == 400, answer.text
        assert said in answer.json()["error"]


# --- the service table ----------------------------------------------------------------


def test_service_table_mistakes_are_reported_at_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text(
        "services:\n"
        "  - {repository: acme/a, service: a}\n"
        "  - {repository: acme/a, service: b}\n"
        "  - {repository: acme/c, application: c, service: c}\n"
        "  - {repository: acme/d, servce: d}\n"
    )
    table, problems = load_service_table(path)
    assert table is None
    text = [f"{p.location}: {p.message}" for p in problems]
    assert any(t.startswith(f"{path}:5:") and "servce" in t for t in text), text
    path.write_text(
        "services:\n  - {repository: acme/a, service: a}\n  - {repository: acme/a, service: b}\n"
    )
    _, problems = load_service_table(path)
    assert [f"{p.location}" for p in problems] == [f"{path}:3:5"]
    assert "already mapped (line 2)" in problems[0].message
    path.write_text("services:\n  - {repository: acme/c, application: c, service: c}\n")
    _, problems = load_service_table(path)
    assert "exactly one of repository" in problems[0].message


def test_serve_refuses_a_bad_table_or_a_weak_secret(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "services.yaml"
    bad.write_text("services: nope\n")
    db = str(tmp_path / "ip.db")
    with pytest.raises(StartupError, match=re.escape(f"{bad}:1:")):
        open_app(ServeSettings(deploy_services=str(bad), db=db))
    with pytest.raises(StartupError, match=r"missing\.yaml"):
        open_app(ServeSettings(deploy_services=str(tmp_path / "missing.yaml"), db=db))
    _, problems = load_hooks("", {"INCIDENT_PILOT_GITHUB_WEBHOOK_SECRET": "short"})
    assert problems and "at least 16 characters" in problems[0]
    secret_file = tmp_path / "gitlab-token"
    secret_file.write_text(GITLAB_TOKEN + "\n")
    config, problems = load_hooks(
        "", {"INCIDENT_PILOT_GITLAB_WEBHOOK_TOKEN_FILE": str(secret_file)}
    )
    assert problems == [] and config.secrets["gitlab"].reveal() == GITLAB_TOKEN
    _, problems = load_hooks(
        "",
        {
            "INCIDENT_PILOT_ARGOCD_WEBHOOK_TOKEN": ARGOCD_TOKEN,
            "INCIDENT_PILOT_ARGOCD_WEBHOOK_TOKEN_FILE": str(secret_file),
        },
    )
    assert problems and "not both" in problems[0]


# --- the point: the next alert's incident cites the deploy ----------------------------


def _alert_after(deploy_ts: str, service: str, minutes: int = 3) -> dict:
    starts = parse_ts(deploy_ts) + timedelta(minutes=minutes)
    return make_webhook(
        make_alert(service=service, severity="critical", starts_at=format_ts(starts))
    )


def _deploy_finding(incident: dict) -> dict:
    findings = [f for f in incident["findings"] if f["rule"] == "deploy.recent_correlated"]
    assert findings, incident["findings"]
    return dict(findings[0])


@pytest.mark.parametrize(
    ("path", "name", "service"),
    [
        ("/hooks/github", "github-deployment_status-success.json", "checkout-api"),
        ("/hooks/gitlab", "gitlab-deployment-success.json", "billing-staging"),
        ("/hooks/argocd", "argocd-app-deployed.json", "guestbook-web"),
    ],
)
def test_an_alert_after_a_webhook_deploy_cites_it(hooks, path, name, service) -> None:
    _, client = hooks()
    body = fixture(name)
    headers = {"/hooks/github": github_headers(body), "/hooks/gitlab": GITLAB}.get(path, ARGOCD)
    record = stored(client, client.post(path, content=body, headers=headers))
    answer = client.post("/alerts", json=_alert_after(record["ts"], service))
    assert answer.status_code == 200, answer.text
    incident_id = answer.json()["results"][0]["incident"]
    incident = client.get(f"/api/incidents/{incident_id}").json()
    finding = _deploy_finding(incident)
    assert [e["path"] for e in finding["evidence"]] == [record["path"]]
    assert record["commit"] in finding["summary"]
    assert finding["severity"] == "high"  # 3 minutes before the alert


@pytest.mark.e2e
def test_a_real_server_takes_a_signed_github_deploy(tmp_path: Path, services_file: Path) -> None:
    server = ops_server(tmp_path, "--deploy-services", str(services_file))
    server.extra_env.update(SECRETS_ENV)
    server.start()
    try:
        body = fixture("github-deployment_status-success.json")
        answer = httpx.post(
            server.url + "/hooks/github", content=body, headers=github_headers(body), timeout=10
        )
        assert answer.status_code == 200, answer.text
        [record_id] = answer.json()["ids"]
        record = httpx.get(
            f"{server.url}/api/context/deploys/{record_id}", headers=bearer("read"), timeout=10
        ).json()
        assert record["service"] == "checkout-api"
        unsigned = httpx.post(
            server.url + "/hooks/github",
            content=body,
            headers={**bearer("admin"), "X-GitHub-Event": "deployment_status"},
            timeout=10,
        )
        assert unsigned.status_code == 401
        alert = httpx.post(
            server.url + "/alerts",
            json=_alert_after(record["ts"], "checkout-api"),
            headers=bearer("ingest"),
            timeout=10,
        )
        incident_id = alert.json()["results"][0]["incident"]
        incident = httpx.get(
            f"{server.url}/api/incidents/{incident_id}", headers=bearer("read"), timeout=10
        ).json()
        assert [e["path"] for e in _deploy_finding(incident)["evidence"]] == [record["path"]]
    finally:
        server.stop()


def test_serve_will_not_start_with_a_bad_service_table(tmp_path: Path) -> None:
    bad = tmp_path / "services.yaml"
    bad.write_text("services:\n  - {repository: acme/a}\n")
    server = ops_server(tmp_path, "--deploy-services", str(bad))
    with pytest.raises(ServerError) as failed:
        server.start()
    assert f"{bad}:2:" in str(failed.value)
