"""Deploy webhooks over HTTP: `POST /hooks/github`, `/hooks/gitlab`, `/hooks/argocd`.

Each receiver authenticates by its provider's own means, never by an API bearer token
(GitHub and GitLab cannot send one; `auth.required_scope` exempts `/hooks/`):

- GitHub: `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body under
  the secret in INCIDENT_PILOT_GITHUB_WEBHOOK_SECRET (or a file named by ..._FILE);
- GitLab: `X-Gitlab-Token`, equal to INCIDENT_PILOT_GITLAB_WEBHOOK_TOKEN (or ..._FILE);
- Argo CD: `Authorization: Bearer <INCIDENT_PILOT_ARGOCD_WEBHOOK_TOKEN>` (or ..._FILE),
  a header the Argo CD webhook service sets.

A receiver whose secret is not configured answers 404 and saying so: an unauthenticated
deploy feed is never open by accident. Comparisons are constant time. The body is read
under a cap, authenticated before it is parsed, mapped by engine/adapters/deploy_hooks.py
and stored through the `/context/deploys` path: 2xx means committed.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.adapters.deploy_hooks import (
    Deploy,
    Ignored,
    argocd_deploy,
    github_deploy,
    gitlab_deploy,
)
from engine.adapters.deploy_services import ServiceTable, load_service_table
from engine.alerts import PayloadError
from engine.delivery import secrets as sec
from engine.ingest import parse_record
from engine.server.body import ClientError, media_type, parse_json_body, read_body
from engine.timeutil import utcnow

if TYPE_CHECKING:
    from engine.server.app import AppState
    from engine.server.settings import ServeSettings

log = logging.getLogger("incident_pilot")
ENV_PREFIX = "INCIDENT_PILOT_"
PREFIX = "/hooks/"
MAX_HOOK_BODY = 1024 * 1024  # GitHub's deployment_status bodies are ~10 KiB
MIN_SECRET_LENGTH = 16
# provider -> (variable naming the secret; what it is called in messages)
SECRETS = {
    "github": ("GITHUB_WEBHOOK_SECRET", "GitHub webhook secret"),
    "gitlab": ("GITLAB_WEBHOOK_TOKEN", "GitLab webhook secret token"),
    "argocd": ("ARGOCD_WEBHOOK_TOKEN", "Argo CD webhook token"),
}
REALM = 'Bearer realm="incident-pilot-argocd"'


@dataclass(frozen=True)
class HookConfig:
    secrets: dict[str, sec.Secret] = field(default_factory=dict)  # provider -> secret
    services: ServiceTable = field(default_factory=ServiceTable)
    problem: str = ""  # why the receivers cannot run (then every one answers 503)


def _secret(provider: str, environ: Mapping[str, str]) -> tuple[sec.Secret | None, str]:
    name, what = SECRETS[provider]
    env, file = ENV_PREFIX + name, ENV_PREFIX + name + "_FILE"
    if environ.get(env, "").strip() and environ.get(file, "").strip():
        return None, f"set {env} or {file}, not both"
    if environ.get(env, "").strip():
        ref = f"env:{env}"
    elif environ.get(file, "").strip():
        ref = f"file:{environ[file].strip()}"
    else:
        return None, ""
    try:
        secret = sec.resolve(ref, environ)
    except sec.SecretError as exc:
        return None, f"the {what}: {exc}"
    if len(secret.reveal()) < MIN_SECRET_LENGTH:
        return None, (
            f"the {what} ({secret.ref}) must be at least {MIN_SECRET_LENGTH} characters "
            "(try: openssl rand -hex 32)"
        )
    return secret, ""


def load_hooks(
    services_file: str, environ: Mapping[str, str] | None = None
) -> tuple[HookConfig, list[str]]:
    """The receivers' secrets and service table, and every problem found (as text)."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    secrets = {}
    for provider in SECRETS:
        secret, problem = _secret(provider, environ)
        if problem:
            problems.append(problem)
        elif secret is not None:
            secrets[provider] = secret
    table, table_problems = load_service_table(services_file)
    problems += [f"{p.location}: {p.message}" for p in table_problems]
    config = HookConfig(secrets, table or ServiceTable(), "; ".join(problems))
    return config, problems


def startup_check(settings: ServeSettings) -> str | None:
    """For `serve`: an error message when the deploy webhooks are misconfigured."""
    _, problems = load_hooks(getattr(settings, "deploy_services", "") or "")
    if problems:
        return "invalid deploy webhook configuration: " + "; ".join(problems)
    return None


def install_hooks(app: Starlette, state: AppState) -> HookConfig:
    config, _ = load_hooks(getattr(state.settings, "deploy_services", "") or "")
    app.state.hooks = config
    if config.secrets:
        log.info(
            "deploy webhooks on: %s (%d services mapped)",
            ", ".join(f"{PREFIX}{p}" for p in config.secrets),
            len(config.services),
        )
    return config


def _state(request: Request) -> AppState:
    return request.app.state.ip  # type: ignore[no-any-return]


def _config(request: Request, provider: str) -> tuple[HookConfig, sec.Secret]:
    config: HookConfig = getattr(request.app.state, "hooks", None) or HookConfig()
    if config.problem:
        raise ClientError(503, f"the deploy webhooks are misconfigured: {config.problem}")
    secret = config.secrets.get(provider)
    if secret is None:
        name, what = SECRETS[provider]
        raise ClientError(
            404,
            f"the {provider} deploy webhook is off: no {what} is configured (set "
            f"{ENV_PREFIX}{name} or {ENV_PREFIX}{name}_FILE on the server; docs/INGEST.md)",
        )
    return config, secret


def _digest(text: str | bytes) -> bytes:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return hashlib.sha256(raw).digest()


def same_secret(presented: str, secret: sec.Secret) -> bool:
    """Constant time, whatever the presented value's length (both sides are hashed)."""
    return hmac.compare_digest(_digest(presented), _digest(secret.reveal()))


def github_signature(secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub sends for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _unauthorized(message: str, bearer: bool = False) -> JSONResponse:
    headers = {"WWW-Authenticate": REALM} if bearer else None
    return JSONResponse({"error": message}, status_code=401, headers=headers)


async def _read(request: Request) -> bytes:
    state = _state(request)
    limit = state.settings.limits.body_limit("context", state.settings.max_body)
    return await read_body(request, min(limit, MAX_HOOK_BODY))


def _json(request: Request, raw: bytes) -> Any:
    if media_type(request) == "application/x-www-form-urlencoded":
        raise ClientError(
            415,
            "the body is form-encoded: set the webhook's content type to application/json",
        )
    return parse_json_body(raw, media_type(request), allow_ndjson=False)


async def _store(request: Request, provider: str, result: Deploy | Ignored) -> Response:
    state = _state(request)
    state.count(f"hooks_{provider}")
    if isinstance(result, Ignored):
        return JSONResponse({"accepted": 0, "ids": [], "note": result.note})
    try:
        record = parse_record("deploys", result.body, "deploy", utcnow(), state.context_limits)
    except PayloadError as exc:
        raise ClientError(400, f"{exc.field}: {exc.message}", exc.field) from None
    from engine.server.app import run_context_write  # app.py imports this module

    stored = await run_context_write(state, state.store.add_context, [record])
    state.count("context_deploys", len(stored))
    commit = record.fields["commit"]
    return JSONResponse(
        {
            "accepted": len(stored),
            "ids": [r.id for r in stored],
            "note": f"stored a deploy of {record.service} at {commit[:12]}",
        }
    )


def _payload_error(exc: PayloadError) -> ClientError:
    text = f"{exc.field}: {exc.message}" if exc.field else exc.message
    return ClientError(400, f"not a deployment: {text}", exc.field)


async def post_github(request: Request) -> Response:
    config, secret = _config(request, "github")
    raw = await _read(request)
    signature = request.headers.get("x-hub-signature-256", "")
    if not signature:
        return _unauthorized("missing X-Hub-Signature-256: set the webhook's secret")
    expected = github_signature(secret.reveal(), raw)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode("latin-1")):
        return _unauthorized("X-Hub-Signature-256 does not match the body and the secret")
    event = request.headers.get("x-github-event", "").strip()
    if not event:
        raise ClientError(400, "missing X-GitHub-Event header")
    body = _json(request, raw)
    try:
        result = github_deploy(event, body, config.services)
    except PayloadError as exc:
        raise _payload_error(exc) from None
    return await _store(request, "github", result)


async def post_gitlab(request: Request) -> Response:
    config, secret = _config(request, "gitlab")
    token = request.headers.get("x-gitlab-token")
    if not token:
        return _unauthorized("missing X-Gitlab-Token: set the webhook's secret token")
    if not same_secret(token, secret):
        return _unauthorized("X-Gitlab-Token does not match the configured secret token")
    raw = await _read(request)
    event = request.headers.get("x-gitlab-event", "").strip()
    if not event:
        raise ClientError(400, "missing X-Gitlab-Event header")
    body = _json(request, raw)
    try:
        result = gitlab_deploy(event, body, config.services)
    except PayloadError as exc:
        raise _payload_error(exc) from None
    return await _store(request, "gitlab", result)


async def post_argocd(request: Request) -> Response:
    config, secret = _config(request, "argocd")
    kind, _, token = request.headers.get("authorization", "").partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        return _unauthorized(
            "authentication required: the Argo CD webhook service must send "
            "Authorization: Bearer <token>",
            bearer=True,
        )
    if not same_secret(token.strip(), secret):
        return _unauthorized("invalid Argo CD webhook token", bearer=True)
    body = _json(request, await _read(request))
    try:
        result = argocd_deploy(body, config.services)
    except PayloadError as exc:
        raise _payload_error(exc) from None
    return await _store(request, "argocd", result)


def hook_routes() -> list[Route]:
    return [
        Route(PREFIX + "github", post_github, methods=["POST"]),
        Route(PREFIX + "gitlab", post_gitlab, methods=["POST"]),
        Route(PREFIX + "argocd", post_argocd, methods=["POST"]),
    ]


def add_hook_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--deploy-services",
        metavar="FILE",
        default=os.environ.get(ENV_PREFIX + "DEPLOY_SERVICES", ""),
        help="the deploy webhooks' service table (repository or Argo CD application -> "
        "service; see docs/INGEST.md), checked against schemas/deploy-services.schema.json "
        f"[env {ENV_PREFIX}DEPLOY_SERVICES]",
    )
