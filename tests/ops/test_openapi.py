"""GET /openapi.json: every route described, schemas from schemas/*.json, and a
Schemathesis run against a live server (no 5xx, responses conform)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from engine.paths import schemas_dir
from engine.server.openapi import FILES
from tests.ops.helpers import alert, bearer


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(spec: dict, ref: str) -> Any:
    node: Any = spec
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_route_is_in_the_spec(make_app) -> None:
    app = make_app()
    spec = app.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    missing = []
    for route in app.app.routes:
        assert isinstance(route, Route), f"unexpected route type {route!r}"
        if not route.include_in_schema:
            continue  # the HTML pages for browsers (engine.web), not the JSON API
        for method in (route.methods or set()) - {"HEAD"}:
            op = spec["paths"].get(route.path, {}).get(method.lower())
            if op is None or "responses" not in op:
                missing.append(f"{method} {route.path}")
            elif method == "POST" and route.path not in ("/-/reload", "/api/deliveries/{id}/retry"):
                assert "requestBody" in op, f"{method} {route.path} has no requestBody"
    assert not missing, f"routes missing from the OpenAPI document: {missing}"


def test_schemas_come_from_the_schema_files_and_every_ref_resolves(make_app) -> None:
    spec = make_app().client.get("/openapi.json").json()
    for name in FILES:
        assert (schemas_dir() / f"{name}.schema.json").is_file()
    assert {"Alert", "AlertmanagerWebhook", "ContextLog", "Incident", "Error"} <= set(
        spec["components"]["schemas"]
    )
    for ref in _refs(spec):
        assert ref.startswith("#/components/"), ref
        _resolve(spec, ref)


def _validator(spec: dict, name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_real_answers_match_their_schemas(make_app) -> None:
    from tests.ops.helpers import FIXTURES

    c = make_app().client
    spec = c.get("/openapi.json").json()
    webhook = (FIXTURES / "grouped-firing.json").read_text()
    import json

    _validator(spec, "AlertmanagerWebhook").validate(json.loads(webhook))
    r = c.post(
        "/alerts", content=webhook, headers={**bearer("ingest"), "Content-Type": "application/json"}
    )
    _validator(spec, "AlertsReceived").validate(r.json())
    incident = r.json()["results"][0]["incident"]
    _validator(spec, "Incident").validate(
        c.get(f"/api/incidents/{incident}", headers=bearer("read")).json()
    )
    _validator(spec, "IncidentList").validate(
        c.get("/api/incidents", headers=bearer("read")).json()
    )
    r = c.post(
        "/context/traces",
        json={"service": "s", "trace_id": "t", "duration_ms": 5},
        headers=bearer("ingest"),
    )
    _validator(spec, "ContextRecordAccepted").validate(r.json())
    record = c.get(f"/api/context/traces/{r.json()['ids'][0]}", headers=bearer("read")).json()
    _validator(spec, "ContextRecord").validate(record)
    _validator(spec, "Stats").validate(c.get("/api/stats", headers=bearer("read")).json())
    _validator(spec, "Rules").validate(c.get("/api/rules", headers=bearer("read")).json())
    resolved = c.post(
        f"/api/incidents/{incident}/resolve", json={"note": "done"}, headers=bearer("admin")
    )
    _validator(spec, "IncidentResolved").validate(resolved.json())
    _validator(spec, "Reload").validate(c.post("/-/reload", headers=bearer("admin")).json())
    _validator(spec, "Error").validate(c.post("/alerts", json=alert(), headers={}).json())


def _spec_of_a_fresh_app() -> dict:
    """The document a server serves, built at import: Schemathesis' lazy `from_fixture`
    loader does not work with pytest 9, so the schema is loaded eagerly and the live
    server's base URL is given per call."""
    from engine.paths import rules_dir
    from engine.server.openapi import build_spec
    from engine.server.settings import ServeSettings
    from engine.testing import open_app

    state, app = open_app(ServeSettings(db=":memory:", rules=(rules_dir(),), quiet=True))
    try:
        return build_spec(list(app.routes))
    finally:
        state.close()


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx, value) -> bytes:  # the spec gives NDJSON bodies as one string
    return str(value).encode("utf-8", "surrogatepass")


@schemathesis.serializer("application/x-protobuf")
def _protobuf(ctx, value) -> bytes:  # OTLP and Loki bodies: arbitrary bytes probe the decoders
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


SPEC = _spec_of_a_fresh_app()
schema = schemathesis.openapi.from_dict(SPEC)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_the_live_server_serves_the_tested_document(live_server) -> None:
    import httpx

    assert httpx.get(live_server.url + "/openapi.json").json() == SPEC


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_openapi(case, live_server) -> None:
    case.call_and_validate(
        base_url=live_server.url, headers=bearer("admin"), checks=CHECKS, timeout=10
    )


def test_a_deploy_webhook_401_names_its_own_signature_or_token(make_app) -> None:
    """GitHub and GitLab cannot send an API token: the webhooks' 401 is about their own
    signature or token, while the token-checked routes keep the shared bearer-token 401."""
    spec = make_app().client.get("/openapi.json").json()
    own = {
        "/hooks/github": "X-Hub-Signature-256",
        "/hooks/gitlab": "X-Gitlab-Token",
        "/hooks/argocd": "Argo CD webhook token",
    }
    for path, names in own.items():
        op = spec["paths"][path]["post"]
        assert op["security"] == []
        unauthorized = op["responses"]["401"]
        assert "$ref" not in unauthorized, f"{path}: 401 is the API's bearer-token answer"
        assert names in unauthorized["description"], (path, unauthorized["description"])
        assert "unknown bearer token" not in unauthorized["description"]
    ingest = spec["paths"]["/v1/traces"]["post"]["responses"]["401"]
    assert ingest == {"$ref": "#/components/responses/E401"}
    assert "bearer token" in spec["components"]["responses"]["E401"]["description"]
