"""Browser sessions: a signed cookie issued for a token, and the CSRF tokens of forms.

The cookie holds `scope|token id|expiry|nonce` and an HMAC-SHA256 of it under the session
key. The key comes from `INCIDENT_PILOT_SESSION_KEY` or the file named by
`--session-key-file` / `INCIDENT_PILOT_SESSION_KEY_FILE`, so every worker and replica
accepts the same cookies; with neither, each process makes its own random key (and says
so: sessions then end when it restarts, and other replicas refuse them). The token itself
is never stored in the cookie, only the non-secret short id the logs use; a session is
valid while a token with that id and scope is still configured and the expiry is ahead.
A form's CSRF token is an HMAC of the session's nonce, so it needs no server-side state.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

ENV_PREFIX = "INCIDENT_PILOT_"
MIN_KEY_LENGTH = 32
DEFAULT_TTL = timedelta(hours=12)
SESSION_COOKIE = "incident_pilot_session"
LOGIN_COOKIE = "incident_pilot_login"  # the sign-in form's CSRF nonce (before a session)
OPEN_TOKEN_ID = "-"  # sessions of a server without tokens (pages open, as the API is)
log = logging.getLogger("incident_pilot")


class SessionKeyError(ValueError):
    """A session key configuration the server refuses to start with."""


@dataclass(frozen=True)
class WebSettings:
    session_key_file: str = ""
    session_ttl: timedelta = DEFAULT_TTL


@dataclass(frozen=True)
class Session:
    scope: str  # "read" or "admin"
    token_id: str
    expires: int  # epoch seconds
    nonce: str

    @property
    def admin(self) -> bool:
        return self.scope == "admin"


def load_session_key(
    settings: WebSettings, environ: Mapping[str, str] | None = None, *, warn: bool = True
) -> bytes:
    """The configured key (env first, then the file), or a random one, with a warning when
    `warn` (tokens are configured, so people sign in)."""
    text, where = _key_text(settings, environ)
    if text:
        if len(text) < MIN_KEY_LENGTH:
            raise SessionKeyError(
                f"{where}: a session key must be at least {MIN_KEY_LENGTH} characters "
                "(try: openssl rand -hex 32)"
            )
        return hashlib.sha256(b"incident-pilot session\x00" + text.encode()).digest()
    (log.warning if warn else log.info)(
        "no session key configured (%sSESSION_KEY or --session-key-file): using a random "
        "one; browser sessions end when this process restarts and are not accepted by "
        "other workers or replicas",
        ENV_PREFIX,
    )
    return secrets.token_bytes(32)


def _key_text(settings: WebSettings, environ: Mapping[str, str] | None) -> tuple[str, str]:
    """The configured key as text (env first, then the file) and where it came from."""
    env = os.environ if environ is None else environ
    text, where = env.get(ENV_PREFIX + "SESSION_KEY", ""), f"{ENV_PREFIX}SESSION_KEY"
    if not text and settings.session_key_file:
        where = settings.session_key_file
        try:
            text = Path(where).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SessionKeyError(f"cannot read the session key file {where}: {exc}") from None
    return text, where


def session_key_text(settings: WebSettings, environ: Mapping[str, str] | None = None) -> str:
    """The configured key's text ("" when none), for the log scrubber."""
    try:
        return _key_text(settings, environ)[0]
    except SessionKeyError:
        return ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Sessions:
    """Issues and checks session cookies and CSRF tokens under one key."""

    def __init__(self, key: bytes, ttl: timedelta = DEFAULT_TTL) -> None:
        self._key, self.ttl = key, ttl

    def _mac(self, purpose: str, text: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\x00{text}".encode(), "sha256").digest())

    def issue(self, scope: str, token_id: str, now: float | None = None) -> tuple[str, Session]:
        """A new session and its cookie value."""
        now = time.time() if now is None else now
        session = Session(
            scope, token_id, int(now + self.ttl.total_seconds()), secrets.token_hex(8)
        )
        body = f"{scope}|{token_id}|{session.expires}|{session.nonce}"
        return f"{body}|{self._mac('session', body)}", session

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None when it is missing, forged or expired."""
        if not cookie or len(cookie) > 512:
            return None
        body, _, mac = cookie.rpartition("|")
        if not hmac.compare_digest(mac.encode(), self._mac("session", body).encode()):
            return None
        parts = body.split("|")
        if len(parts) != 4 or parts[0] not in ("read", "admin") or not parts[2].isdigit():
            return None
        session = Session(parts[0], parts[1], int(parts[2]), parts[3])
        if session.expires <= (time.time() if now is None else now):
            return None
        return session

    def csrf(self, session: Session) -> str:
        """The CSRF token the session's forms carry."""
        return self._mac("csrf", session.nonce)

    def login_nonce(self) -> str:
        return secrets.token_hex(16)

    def login_csrf(self, nonce: str) -> str:
        """The CSRF token of the sign-in form, bound to the nonce in its cookie."""
        return self._mac("login", nonce)

    @staticmethod
    def same(expected: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def add_web_arguments(p: argparse.ArgumentParser, duration: Callable[[str], timedelta]) -> None:
    p.add_argument(
        "--session-key-file",
        default=os.environ.get(ENV_PREFIX + "SESSION_KEY_FILE", ""),
        help="file holding the key that signs browser session cookies (at least 32 "
        "characters; every replica needs the same); the key may also come from "
        f"{ENV_PREFIX}SESSION_KEY; without either, a random per-process key "
        f"[env {ENV_PREFIX}SESSION_KEY_FILE]",
    )
    p.add_argument(
        "--session-ttl",
        type=duration,
        default=duration(os.environ.get(ENV_PREFIX + "SESSION_TTL", "12h")),
        help=f"how long a browser sign-in lasts (default 12h) [env {ENV_PREFIX}SESSION_TTL]",
    )


def web_from_args(args: argparse.Namespace) -> WebSettings:
    return WebSettings(
        session_key_file=getattr(args, "session_key_file", "") or "",
        session_ttl=getattr(args, "session_ttl", DEFAULT_TTL),
    )
