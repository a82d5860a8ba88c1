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

import hashlib
import hmac
import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.adapters.deploy_config import ENV_PREFIX, SECRETS, HookConfig
from engine.adapters.deploy_hooks import (
    Deploy,
    Ignored,
    argocd_deploy,
    github_deploy,
    gitlab_deploy,
)
from engine.alerts import PayloadError
from engine.delivery import secrets as sec
from engine.ingest import parse_record
from engine.server.body import ClientError, media_type, parse_json_body, read_body
from engine.timeutil import utcnow

if TYPE_CHECKING:
    from engine.server.state import AppState

log = logging.getLogger("incident_pilot")
PREFIX = "/hooks/"
MAX_HOOK_BODY = 1024 * 1024  # GitHub's deployment_status bodies are ~10 KiB
REALM = 'Bearer realm="incident-pilot-argocd"'


def _state(request: Request) -> AppState:
    return request.app.state.ip  # type: ignore[no-any-return]


def _config(request: Request, provider: str) -> tuple[HookConfig, sec.Secret]:
    config = _state(request).hooks
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
    stored = await state.run_context_write(state.store.add_context, [record])
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
