"""Bearer-token authentication with three scopes: ingest, read, admin (admin implies all).

Tokens come from `INCIDENT_PILOT_TOKENS` ("scope:token,scope:token") and/or a file named by
`--tokens-file` / `INCIDENT_PILOT_TOKENS_FILE` (one "scope token" per line, `#` comments).
Only SHA-256 digests are kept in memory; a presented token is compared with
`hmac.compare_digest` against every configured digest (no early exit).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from engine.web.routes import PAGE_PREFIX

ENV_PREFIX = "INCIDENT_PILOT_"
SCOPES = ("ingest", "read", "admin")
MIN_TOKEN_LENGTH = 16
REALM = 'Bearer realm="incident-pilot"'
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
# POSTs that need `ingest` (besides /context/*): Alertmanager, OTLP, Loki.
INGEST_PATHS = frozenset({"/alerts", "/v1/traces", "/v1/logs", "/loki/api/v1/push"})
# The deploy webhooks (engine/server/hooks.py) are exempt from the bearer check because
# GitHub and GitLab cannot send a bearer token. They are NOT open: each one ALWAYS checks
# its provider's own signature or token, and answers 404 while that secret is unset,
# whether or not API tokens are configured.
SELF_AUTHENTICATED_PREFIX = "/hooks/"


class AuthConfigError(ValueError):
    """A token configuration the server refuses to start with."""


@dataclass(frozen=True)
class AuthSettings:
    tokens_file: str = ""
    insecure: bool = False
    metrics_auth: bool = False


@dataclass(frozen=True)
class TokenSet:
    """(sha256 digest, scope, short id) per configured token."""

    entries: tuple[tuple[bytes, str, str], ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.entries)

    def scopes_for(self, token: str) -> set[str]:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: set[str] = set()
        for known, scope, _ in self.entries:  # compare against every token: constant work
            if hmac.compare_digest(digest, known):
                found.add(scope)
        return found

    def token_id(self, token: str) -> str:
        """A short, non-secret name for a token (for logs): a prefix of its digest."""
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _entry(scope: str, token: str, where: str) -> tuple[bytes, str, str]:
    scope, token = scope.strip().lower(), token.strip()
    if scope not in SCOPES:
        raise AuthConfigError(f"{where}: unknown scope {scope!r} (use {', '.join(SCOPES)})")
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise AuthConfigError(
            f"{where}: a {scope} token must be at least {MIN_TOKEN_LENGTH} characters, "
            "without spaces (try: openssl rand -hex 32)"
        )
    digest = hashlib.sha256(token.encode()).digest()
    return digest, scope, digest.hex()[:8]


def parse_tokens_env(text: str) -> list[tuple[bytes, str, str]]:
    out = []
    for i, item in enumerate(p for p in text.split(",") if p.strip()):
        scope, sep, token = item.partition(":")
        if not sep:
            raise AuthConfigError(f"{ENV_PREFIX}TOKENS entry {i + 1}: expected scope:token")
        out.append(_entry(scope, token, f"{ENV_PREFIX}TOKENS entry {i + 1}"))
    return out


def parse_tokens_file(path: Path) -> list[tuple[bytes, str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthConfigError(f"cannot read tokens file {path}: {exc.strerror}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise AuthConfigError(f"{path}:{n}: expected 'scope token'")
        out.append(_entry(parts[0], parts[1], f"{path}:{n}"))
    return out


def load_tokens(settings: AuthSettings, environ: dict[str, str] | None = None) -> TokenSet:
    env = os.environ if environ is None else environ
    entries = parse_tokens_env(env.get(ENV_PREFIX + "TOKENS", ""))
    if settings.tokens_file:
        entries += parse_tokens_file(Path(settings.tokens_file).expanduser())
    return TokenSet(tuple(entries))


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_problem(host: str, tokens: TokenSet, insecure: bool) -> str | None:
    """Why the server must not start on `host`, or None."""
    if tokens or insecure or is_loopback(host):
        return None
    return (
        f"refusing to listen on {host} without authentication: configure tokens "
        f"({ENV_PREFIX}TOKENS or --tokens-file), listen on 127.0.0.1, or pass --insecure "
        "to accept unauthenticated requests from the network"
    )


def required_scope(method: str, path: str, metrics_auth: bool) -> str | None:
    """The scope a request needs (None: no bearer token is checked)."""
    if path in OPEN_PATHS or path.startswith(SELF_AUTHENTICATED_PREFIX):
        return None
    if path == "/" or path == PAGE_PREFIX or path.startswith(PAGE_PREFIX + "/"):
        return None  # the pages check their own session cookie (engine.web.pages)
    if path == "/metrics":
        return "read" if metrics_auth else None
    if method == "POST" and (path in INGEST_PATHS or path.startswith("/context/")):
        return "ingest"
    if path == "/-/reload" or (method == "POST" and path.startswith("/api/")):
        return "admin"
    return "read"


async def _deny(send: Send, status: int, message: str) -> None:
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", REALM.encode()))
    body = json.dumps({"error": message}).encode()
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Checks `Authorization: Bearer` against the token set; no tokens means open."""

    def __init__(self, app: ASGIApp, tokens: TokenSet, metrics_auth: bool = False) -> None:
        self.app, self.tokens, self.metrics_auth = app, tokens, metrics_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens:
            await self.app(scope, receive, send)
            return
        needed = required_scope(scope["method"], scope["path"], self.metrics_auth)
        if needed is None:
            await self.app(scope, receive, send)
            return
        header = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        kind, _, token = header.partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            await _deny(send, 401, "authentication required: send Authorization: Bearer <token>")
            return
        granted = self.tokens.scopes_for(token)
        if not granted:
            await _deny(send, 401, "invalid token")
            return
        scope.setdefault("state", {})["auth"] = self.tokens.token_id(token)
        if "admin" not in granted and needed not in granted:
            await _deny(send, 403, f"this token lacks the {needed!r} scope")
            return
        await self.app(scope, receive, send)


def add_auth_arguments(p: argparse.ArgumentParser) -> None:
    def env(name: str) -> str:
        return os.environ.get(ENV_PREFIX + name, "")

    truthy = ("1", "true", "yes", "on")
    p.add_argument(
        "--tokens-file",
        default=env("TOKENS_FILE"),
        help="file of bearer tokens, one 'scope token' per line (scopes: ingest, read, admin); "
        f"tokens may also come from {ENV_PREFIX}TOKENS='scope:token,...' [env {ENV_PREFIX}TOKENS_FILE]",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        default=env("INSECURE").lower() in truthy,
        help="allow listening on a non-loopback address without tokens [env "
        f"{ENV_PREFIX}INSECURE=1]",
    )
    p.add_argument(
        "--metrics-auth",
        action="store_true",
        default=env("METRICS_AUTH").lower() in truthy,
        help=f"require a read-scope token on /metrics [env {ENV_PREFIX}METRICS_AUTH=1]",
    )


def auth_from_args(args: argparse.Namespace) -> AuthSettings:
    return AuthSettings(
        tokens_file=args.tokens_file or "",
        insecure=bool(args.insecure),
        metrics_auth=bool(args.metrics_auth),
    )


def startup_check(host: str, settings: AuthSettings) -> str | None:
    """Load the tokens and check the listen address: an error message, or None (after
    warning, when no token is configured, that authentication is off)."""
    import logging

    try:
        tokens = load_tokens(settings)
    except AuthConfigError as exc:
        return f"invalid token configuration: {exc}"
    problem = bind_problem(host, tokens, settings.insecure)
    if problem:
        return problem
    if not tokens:
        logging.getLogger("incident_pilot").warning(
            "no tokens configured: authentication is OFF; %s",
            "listening on loopback only"
            if is_loopback(host)
            else f"--insecure: anyone who can reach {host} can post alerts and resolve incidents",
        )
    return None
