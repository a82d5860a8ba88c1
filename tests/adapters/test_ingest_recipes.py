"""The recipes of docs/INGEST.md, read from the page itself so they cannot drift: the
ones that can run here run against a live server (the SDK environment and Python setup,
the GitHub Actions step with curl and jq); the collector configs (OTel Collector,
Alloy, Promtail, Vector) and the Argo CD template are checked against what the
receivers take and against the payload fixtures."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.adapters.deploy_services import load_service_table
from engine.store.sqlite import SQLiteStore
from engine.testing import ServerProcess
from tests.ops.helpers import TOKENS, ops_server

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "INGEST.md").read_text()
FIXTURES = ROOT / "tests" / "fixtures" / "webhooks"
DOC_HOST = "http://incident-pilot:9099"  # the server the recipes name


def blocks(heading: str) -> list[tuple[str, str]]:
    """(language, text) of every fenced block under the `### heading` of the page."""
    start = PAGE.index(f"\n### {heading}\n")
    end = PAGE.find("\n## ", start + 1)
    nxt = PAGE.find("\n### ", start + 1)
    section = PAGE[start : min(p for p in (end, nxt) if p != -1)]
    return re.findall(r"```(\w*)\n(.*?)```", section, re.S)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ops_server(tmp_path_factory.mktemp("recipes")).start()
    yield srv
    srv.stop()


def _records(server: ServerProcess, kind: str, service: str) -> list[dict[str, Any]]:
    """What the server stored (its SQLite file, read beside it), waiting for the first."""
    deadline = time.monotonic() + 10
    with SQLiteStore(server.db) as store:
        while True:
            start = datetime.now(UTC) - timedelta(days=1)
            found = store.query_context(kind, start=start, end=start + timedelta(days=2))
            mine = [{"fields": r.fields} for r in found if r.service == service]
            if mine or time.monotonic() > deadline:
                return mine
            time.sleep(0.1)


@pytest.mark.e2e
def test_the_sdk_recipe_exports_spans_as_written(server: ServerProcess) -> None:
    """The `export OTEL_...` lines and the Python setup, run as a user would (a shell,
    then Python), with only the server's address put in place of the page's."""
    (env_lang, env), (py_lang, setup) = blocks(
        "Recipe: an SDK exporter, straight from the application"
    )
    assert (env_lang, py_lang) == ("sh", "python")
    assert DOC_HOST in env
    script = (
        setup
        + "\nfrom opentelemetry.trace import SpanKind\n"
        + "trace.get_tracer('recipe').start_span('GET /cart', kind=SpanKind.SERVER).end()\n"
        + "provider.shutdown()\n"
    )
    shell = env.replace(DOC_HOST, server.url) + f'\nexec "{sys.executable}" -c "$SCRIPT"\n'
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INCIDENT_PILOT_"))
    }
    environ |= {"INCIDENT_PILOT_INGEST_TOKEN": TOKENS["ingest"], "SCRIPT": script}
    done = subprocess.run(
        ["bash", "-c", shell], env=environ, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Failed to export" not in done.stderr, done.stderr
    (span,) = _records(server, "traces", "checkout-api")  # OTEL_SERVICE_NAME of the recipe
    assert span["fields"]["name"] == "GET /cart" and span["fields"]["kind"] == "server"


@pytest.mark.e2e
@pytest.mark.skipif(not (shutil.which("jq") and shutil.which("curl")), reason="needs jq and curl")
def test_the_github_actions_step_records_the_deploy(server: ServerProcess) -> None:
    """The step's `run:` script with its `env:`, and the variables GitHub Actions sets."""
    ((lang, text),) = blocks("From a CI job: plain JSON to /context/deploys")
    assert lang == "yaml"
    (step,) = yaml.safe_load(text)
    assert step["if"] == "success()"
    env = dict(step["env"])
    assert env["INCIDENT_PILOT_TOKEN"] == "${{ secrets.INCIDENT_PILOT_INGEST_TOKEN }}"
    env |= {
        "INCIDENT_PILOT_URL": server.url,
        "INCIDENT_PILOT_TOKEN": TOKENS["ingest"],  # what GitHub puts for the secret
        "GITHUB_SHA": "9f2c1e7d",
        "GITHUB_ACTOR": "octocat",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "shop/checkout-api",
        "GITHUB_RUN_ID": "42",
        "PATH": os.environ["PATH"],
    }
    done = subprocess.run(
        ["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["accepted"] == 1
    (deploy,) = _records(server, "deploys", "checkout-api")
    assert deploy["fields"] == {
        "commit": "9f2c1e7d",
        "author": "octocat",
        "attributes": {
            "environment": "production",
            "url": "https://github.com/shop/checkout-api/actions/runs/42",
        },
    }


def test_the_collector_configs_point_at_the_receivers() -> None:
    """What can't run here: each config sends to a path the server routes, with a bearer
    token, within the per-request record limit."""
    ((_, otelcol),) = blocks("Recipe: the OpenTelemetry Collector")
    config = yaml.safe_load(otelcol)
    exporter = config["exporters"]["otlphttp/incident-pilot"]
    assert exporter["endpoint"] == DOC_HOST  # otlphttp appends /v1/traces and /v1/logs
    assert exporter["compression"] == "gzip" and exporter["encoding"] in ("proto", "json")
    assert exporter["headers"]["Authorization"].startswith("Bearer ")
    assert config["processors"]["batch/incident-pilot"]["send_batch_max_size"] <= 10_000
    for pipeline in ("traces/incident-pilot", "logs/incident-pilot"):
        assert config["service"]["pipelines"][pipeline]["exporters"] == ["otlphttp/incident-pilot"]

    ((lang, alloy),) = blocks("Grafana Alloy")
    assert lang == "alloy"
    assert f'url               = "{DOC_HOST}/loki/api/v1/push"' in alloy
    assert "bearer_token_file" in alloy

    ((_, promtail),) = blocks("Promtail")
    (client,) = yaml.safe_load(promtail)["clients"]
    assert client["url"] == f"{DOC_HOST}/loki/api/v1/push" and client["bearer_token_file"]
    labels = yaml.safe_load(promtail)["scrape_configs"][0]["static_configs"][0]["labels"]
    assert "service_name" in labels  # the first of the default --loki-service-labels

    ((_, vector),) = blocks("Vector")
    sink = yaml.safe_load(vector)["sinks"]["incident_pilot"]
    assert sink["type"] == "loki" and sink["endpoint"] == DOC_HOST  # the sink adds the path
    assert sink["auth"]["strategy"] == "bearer" and "service_name" in sink["labels"]


def _go_template(text: str, values: dict[str, Any]) -> str:
    """Argo CD's `{{.a.b}}` field references (the only template syntax the recipe's body
    uses), filled from `values`."""

    def field(match: re.Match[str]) -> str:
        node: Any = values
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    rendered = re.sub(r"\{\{\.([\w.]+)\}\}", field, text)
    assert "{{" not in rendered, rendered
    return rendered


def test_the_argocd_template_renders_the_fixture_the_receiver_is_tested_with() -> None:
    """The documented `template.app-deployed` body, rendered for Argo CD's `guestbook`
    example application, is tests/fixtures/webhooks/argocd-app-deployed.json."""
    config = next(yaml.safe_load(t) for lang, t in blocks("Argo CD") if "ConfigMap" in t)
    service = yaml.safe_load(config["data"]["service.webhook.incident-pilot"])
    assert service["url"].endswith("/hooks/argocd")
    assert {"name": "Authorization", "value": "Bearer $incident-pilot-token"} in service["headers"]
    template = yaml.safe_load(config["data"]["template.app-deployed"])
    body = template["webhook"]["incident-pilot"]["body"]
    guestbook = {
        "app": {
            "metadata": {"name": "guestbook"},
            "spec": {
                "project": "default",
                "source": {"repoURL": "https://github.com/argoproj/argocd-example-apps.git"},
                "destination": {
                    "server": "https://kubernetes.default.svc",
                    "namespace": "guestbook",
                },
            },
            "status": {
                "operationState": {
                    "syncResult": {"revision": "53e28ff20cc530b9ada2173fbbd64d48338583ba"},
                    "finishedAt": "2024-05-02T09:14:07Z",
                    "operation": {"initiatedBy": {"username": "admin"}},
                }
            },
        },
        "context": {"argocdUrl": "https://argocd.example.com"},
    }
    rendered = json.loads(_go_template(body, guestbook))
    assert rendered == json.loads((FIXTURES / "argocd-app-deployed.json").read_text())
    trigger = yaml.safe_load(config["data"]["trigger.on-deployed"])
    assert trigger[0]["send"] == ["app-deployed"]


def test_the_documented_service_table_loads_and_maps_as_the_page_says(tmp_path: Path) -> None:
    (lang, table), (_, error) = blocks("The service table")
    assert lang == "yaml"
    path = tmp_path / "deploy-services.yaml"
    path.write_text(table)
    services, problems = load_service_table(path)
    assert problems == [] and services is not None
    assert services.lookup("repository", "acme/checkout", None, "checkout") == "checkout-api"
    assert services.lookup("repository", "acme/monorepo", "staging", "m") == "gateway-staging"
    assert services.lookup("repository", "acme/monorepo", "production", "m") == "gateway"
    assert services.lookup("application", "checkout-prod", None, "x") == "checkout-api"
    # The page's example of a mistake (the same repository twice) is what serve prints.
    entry = next(line for line in table.splitlines() if "acme/checkout" in line)
    path.write_text(f"services:\n{entry}\n{entry}\n")
    serve = [sys.executable, "-m", "engine", "serve", "--db", ":memory:", "--port", "0"]
    done = subprocess.run(
        [*serve, "--deploy-services", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == error.strip()
