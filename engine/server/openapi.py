"""`GET /openapi.json`: an OpenAPI 3.1 description of every route.

The schemas are the JSON Schema files in `schemas/` (one source of truth): each is embedded
under `components.schemas` by its `title`, its `$defs` hoisted next to it, and `$ref`s
rewritten to point there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine import __version__
from engine.paths import schemas_dir
from engine.server.otlp import otlp_operations
from engine.server.pulls import pull_operations
from engine.server.tables import table_operations

FILES = (
    "alert", "alertmanager-webhook", "context-deploy", "context-log", "context-trace",
    "api-error", "api-incident", "api-context", "api-alerts-response", "api-service",
    "api-delivery", "api-hook",
)  # fmt: skip
KIND = {"name": "kind", "in": "path", "required": True,
        "schema": {"type": "string", "enum": ["deploys", "logs", "traces"]}}  # fmt: skip
INCIDENT_ID = {"name": "id", "in": "path", "required": True, "description": "an incident id",
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"}}  # fmt: skip


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}


_ERROR_TEXT = {
    400: "Bad request: malformed JSON or a field out of bounds (`field` names it)",
    401: "No or unknown bearer token",
    403: "The token lacks the scope this route needs",
    404: "No such resource",
    408: "The request body did not arrive in time",
    413: "The body is larger than the configured limit",
    415: "Unsupported Content-Type",
    422: "The rules have errors; the previous rules stay in use",
    503: "Busy (the request took too long, too many connections) or the store cannot "
    "commit: nothing was stored, retry after `Retry-After` seconds",
}
_HOOK_ERRORS = (400, 404, 408, 413, 415, 503)  # 404: the receiver is off (no secret set)


def _hook(summary: str, unauthorized: str, *headers: str) -> dict[str, Any]:
    """A deploy webhook (engine/server/hooks.py): its own signature or token, no API
    token; `unauthorized` says what its 401 means."""
    return {
        "summary": summary,
        "security": [],
        "parameters": [
            {"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
            for h in headers
        ],
        "requestBody": _body({"type": "object"}),
        "responses": {
            "200": _json("HookAnswer", "Committed, or acknowledged and not stored (see note)"),
            "401": _json("Error", unauthorized),
            **_errors(*_HOOK_ERRORS),
        },
    }


_AUTH = (401, 403)
_BODY = (400, 401, 403, 408, 413, 415, 503)


def _body(schema: dict[str, Any], ndjson: bool = False) -> dict[str, Any]:
    content = {"application/json": {"schema": schema}}
    if ndjson:
        content["application/x-ndjson"] = {"schema": {"type": "string"}}
    return {"required": True, "content": content}


def _text_error(code: int) -> dict[str, Any]:  # Loki's clients expect plain-text errors
    return {
        "description": _ERROR_TEXT[code],
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }


_LOKI_PUSH = {
    "summary": "Loki push API: JSON, or snappy-compressed protobuf (scope ingest)",
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "required": ["streams"]}},
            "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "204": {"description": "Committed (lines below the volume filter are dropped)"},
        **{str(c): _text_error(c) for c in (400, 413, 415)},
        **_errors(401, 403, 408, 503),
    },
}


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    record = {"oneOf": [_ref(n) for n in ("ContextDeploy", "ContextLog", "ContextTrace")]}
    alerts_body = {
        "anyOf": [
            _ref("AlertmanagerWebhook"),
            _ref("Alert"),
            {"type": "array", "minItems": 1, "maxItems": 1000, "items": _ref("Alert")},
        ]
    }
    return {
        ("post", "/alerts"): {
            "summary": "Receive Alertmanager alerts (scope ingest)",
            "requestBody": _body(alerts_body),
            "responses": {"200": _json("AlertsReceived", "Committed"), **_errors(*_BODY)},
        },
        ("post", "/context/{kind}"): {
            "summary": "Push context records: one object, an array, or NDJSON (scope ingest)",
            "parameters": [KIND],
            "requestBody": _body(
                {"anyOf": [record, {"type": "array", "minItems": 1, "items": record}]}, True
            ),
            "responses": {
                "200": _json("ContextRecordAccepted", "Committed"),
                **_errors(*_BODY, 404),
            },
        },
        ("post", "/hooks/github"): _hook(
            "GitHub deployment_status webhook (X-Hub-Signature-256)",
            "X-Hub-Signature-256 is missing or does not match the body and the webhook secret",
            "X-GitHub-Event",
            "X-Hub-Signature-256",
        ),
        ("post", "/hooks/gitlab"): _hook(
            "GitLab deployment events webhook (X-Gitlab-Token)",
            "X-Gitlab-Token is missing or is not the webhook's secret token",
            "X-Gitlab-Event",
            "X-Gitlab-Token",
        ),
        ("post", "/hooks/argocd"): _hook(
            "Argo CD Notifications webhook (its own token, not an API token)",
            "Authorization: Bearer <token> is missing or is not the Argo CD webhook token "
            "(INCIDENT_PILOT_ARGOCD_WEBHOOK_TOKEN); API tokens are not accepted here",
            "Authorization",
        ),
        ("post", "/loki/api/v1/push"): _LOKI_PUSH,  # docs/INGEST.md
        ("get", "/api/incidents"): {
            "summary": "List incidents, newest first (scope read)",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                },
                {
                    "name": "status",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["open", "resolved"]},
                },
                {"name": "service", "in": "query", "schema": {"type": "string", "maxLength": 256}},
                {"name": "team", "in": "query", "schema": {"type": "string", "maxLength": 256}},
                {
                    "name": "since",
                    "in": "query",
                    "schema": {"type": "string", "format": "date-time"},
                },
                {
                    "name": "severity",
                    "in": "query",
                    "description": "one or more of info, low, medium, high, critical, comma-separated",
                    "schema": {"type": "string", "maxLength": 256},
                },
                {
                    "name": "q",
                    "in": "query",
                    "description": "text search: each word starts a word of the id, title, team or a label value",
                    "schema": {"type": "string", "maxLength": 256},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "the next_cursor of the previous page",
                    "schema": {"type": "string", "maxLength": 200},
                },
            ],
            "responses": {"200": _json("IncidentList", "Incidents"), **_errors(400, *_AUTH)},
        },
        ("get", "/api/incidents/{id}"): {
            "summary": "One incident with its findings and evidence (scope read)",
            "parameters": [INCIDENT_ID],
            "responses": {"200": _json("Incident", "The incident"), **_errors(400, 404, *_AUTH)},
        },
        ("post", "/api/incidents/{id}/resolve"): {
            "summary": "Resolve an incident by hand, with an optional note (scope admin)",
            "parameters": [INCIDENT_ID],
            "requestBody": {
                "required": False,
                "content": {"application/json": {"schema": _ref("IncidentResolveRequest")}},
            },
            "responses": {"200": _json("IncidentResolved", "Resolved"), **_errors(*_BODY, 404)},
        },
        ("get", "/api/context/{kind}/{id}"): {
            "summary": "One stored context record (scope read)",
            "parameters": [
                KIND,
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                },
            ],
            "responses": {"200": _json("ContextRecord", "The record"), **_errors(400, 404, *_AUTH)},
        },
        ("get", "/api/stats"): {
            "summary": "Counters since start and store totals (scope read)",
            "responses": {"200": _json("Stats", "Stats"), **_errors(*_AUTH)},
        },
        ("get", "/api/rules"): {
            "summary": "The rules in use (scope read)",
            "responses": {"200": _json("Rules", "Rules"), **_errors(*_AUTH)},
        },
        ("get", "/api/config"): {
            "summary": "The effective delivery configuration, secrets redacted (scope read)",
            "responses": {
                "200": _json("Config", "Configuration"),
                "404": {"$ref": "#/components/responses/E404"},
                **_errors(*_AUTH),
            },
        },
        ("get", "/api/deliveries"): {
            "summary": "The outbox's deliveries, newest first: dead letters by default; "
            "filter by status, incident and sink (scope read)",
            "parameters": [
                {
                    "name": "status",
                    "in": "query",
                    "description": "pending, sending, delivered, dead, a comma-separated "
                    "list of them, or all",
                    "schema": {
                        "type": "string",
                        "pattern": "^(all|(pending|sending|delivered|dead)"
                        "(,(pending|sending|delivered|dead))*)$",
                        "default": "dead",
                    },
                },
                {"name": "incident", "in": "query", "schema": INCIDENT_ID["schema"]},
                {
                    "name": "sink",
                    "in": "query",
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
                },
                {
                    "name": "before",
                    "in": "query",
                    "description": "only deliveries with a smaller id (the next page)",
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                },
            ],
            "responses": {"200": _json("Deliveries", "Deliveries"), **_errors(400, *_AUTH)},
        },
        ("post", "/api/deliveries/{id}/retry"): {
            "summary": "Re-send a dead letter now, with a fresh retry window (scope admin)",
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "description": "a delivery id",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                }
            ],
            "responses": {
                "200": _json("Delivery", "The delivery, pending again"),
                "409": _json(
                    "RetryRefused",
                    "Not re-sent: the delivery is not dead, or it is a trigger or update "
                    "whose incident has since resolved (it would open an alert nothing "
                    "resolves)",
                ),
                **_errors(404, *_AUTH),
            },
        },
        ("get", "/healthz"): {
            "summary": "Liveness (open)",
            "responses": {"200": _json("Health", "Alive")},
        },
        ("get", "/readyz"): {
            "summary": "Readiness: the store can commit writes (open)",
            "responses": {
                "200": {
                    "description": "Ready",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "503": {
                    "description": "The store cannot commit; `store` names the reason",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            },
        },
        ("get", "/metrics"): {
            "summary": "Prometheus metrics (open, or scope read with --metrics-auth)",
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(*_AUTH),
            },
        },
        ("post", "/-/reload"): {
            "summary": "Reload the rules; kept unchanged when the new set has errors (scope admin)",
            "responses": {
                "200": _json("Reload", "Reloaded"),
                "422": {
                    "description": _ERROR_TEXT[422],
                    "content": {"application/json": {"schema": _ref("Reload")}},
                },
                **_errors(*_AUTH),
            },
        },
        ("get", "/openapi.json"): {
            "summary": "This document (open)",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        },
    }


def _component_name(title: str, name: str, container: bool) -> str:
    return name if container else f"{title}{name}"


def _rewrite(node: Any, title: str, container: bool, titles: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                file, _, pointer = value.partition("#")
                owner = titles[file.removesuffix(".schema.json")] if file else title
                own_container = container if not file else False
                if pointer.startswith("/$defs/"):
                    name = _component_name(owner, pointer.removeprefix("/$defs/"), own_container)
                else:
                    name = owner
                out[key] = f"#/components/schemas/{name}"
            elif key != "$schema":
                out[key] = _rewrite(value, title, container, titles)
        return out
    if isinstance(node, list):
        return [_rewrite(v, title, container, titles) for v in node]
    return node


def load_components(directory: Path | None = None) -> dict[str, Any]:
    """Every schema file, and its $defs, as OpenAPI components."""
    directory = directory or schemas_dir()
    docs = {f: json.loads((directory / f"{f}.schema.json").read_text()) for f in FILES}
    titles = {f: doc["title"] for f, doc in docs.items()}
    out: dict[str, Any] = {}
    for doc in docs.values():
        title = doc["title"]
        container = "type" not in doc and "properties" not in doc
        defs = doc.pop("$defs", {})
        for name, sub in defs.items():
            out[_component_name(title, name, container)] = _rewrite(sub, title, container, titles)
        if not container:
            out[title] = _rewrite(doc, title, container, titles)
    return out


def build_spec(routes: list[Any]) -> dict[str, Any]:
    ops = {**_operations(), **otlp_operations(), **pull_operations(), **table_operations()}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op = ops.get((method.lower(), route.path))
            if op is not None:
                op = {**op, "operationId": f"{method.lower()} {route.path}"}
                paths.setdefault(route.path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "incident-pilot",
            "version": __version__,
            "description": "Turns Alertmanager alerts into evidence-cited incidents.",
        },
        "paths": paths,
        "components": {
            "schemas": load_components(),
            "responses": {f"E{code}": _json("Error", text) for code, text in _ERROR_TEXT.items()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }


async def openapi_endpoint(request: Request) -> Response:
    spec = getattr(request.app.state, "openapi", None)
    if spec is None:
        spec = build_spec(list(request.app.routes))
        request.app.state.openapi = spec
    return JSONResponse(spec)
