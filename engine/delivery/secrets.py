"""Secrets for sinks: read from an environment variable or a file, never from the config.

A `Secret` prints as `***` (repr, str, f-strings, logging), so passing one to a log call
or an error message by mistake cannot leak it; `reveal()` is the only way to the value.
A `Redactor` scrubs every known secret out of text that may quote it (an error from a
library, a response body echoing a URL, a path or a header) before it is logged or
stored: not only the value as configured, but every form a receiver or proxy may echo it
in (see `forms`).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

MASK = "***"
MAX_SECRET_FILE = 64 * 1024
MIN_SECRET = 4  # a 1-3 character "secret" would mask half the log
MIN_PART = 8  # a part of a secret URL (path segment, query value) shorter than this is no secret


class SecretError(ValueError):
    """A secret reference that cannot be resolved (unset variable, unreadable file)."""


class Secret:
    __slots__ = ("_value", "ref")

    def __init__(self, value: str, ref: str) -> None:
        self._value = value
        self.ref = ref  # "env:NAME" or "file:/path": where it came from, safe to show

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK}, from {self.ref})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK


def ref_of(spec: Mapping[str, object], field: str) -> str | None:
    """The reference a config mapping gives for secret `field` (`field_env` / `field_file`)."""
    env, file = spec.get(f"{field}_env"), spec.get(f"{field}_file")
    if isinstance(env, str) and env:
        return f"env:{env}"
    if isinstance(file, str) and file:
        return f"file:{file}"
    return None


def resolve(ref: str, environ: Mapping[str, str] | None = None) -> Secret:
    """Read the secret `ref` names. Raises SecretError with a message that never holds it."""
    environ = os.environ if environ is None else environ
    kind, _, where = ref.partition(":")
    if kind == "env":
        value = environ.get(where, "")
        if not value.strip():
            raise SecretError(f"environment variable {where} is not set or empty")
        return Secret(value.strip(), ref)
    if kind == "file":
        path = Path(where).expanduser()
        try:
            if path.stat().st_size > MAX_SECRET_FILE:
                raise SecretError(f"secret file {where} is larger than {MAX_SECRET_FILE} bytes")
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"cannot read secret file {where}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise SecretError(f"secret file {where} is not UTF-8 text") from None
        if not value:
            raise SecretError(f"secret file {where} is empty")
        return Secret(value, ref)
    raise SecretError(f"unknown secret reference {ref!r}")


def _url_parts(value: str) -> set[str]:
    """The parts of a secret URL that say as much as the URL: a Slack webhook's path
    (`/services/T0/B0/XXXX`) is the secret, whatever host it is echoed with."""
    if "://" not in value:
        return set()
    try:
        parts = urlsplit(value)
    except ValueError:
        return set()
    found = {parts.path, parts.path.lstrip("/"), parts.query}
    if parts.query:
        found.add(f"{parts.path}?{parts.query}")
        found.update(v for _, v in parse_qsl(parts.query, keep_blank_values=True))
    if parts.password:
        found.update({parts.password, unquote(parts.password)})
    for segment in parts.path.split("/"):
        # A token-like segment (the XXXX of /services/T0/B0/XXXX), not a word such as
        # "services": long, or with a digit in it.
        if len(segment) >= 16 or (len(segment) >= MIN_PART and re.search(r"\d", segment)):
            found.add(segment)
    return {p for p in found if len(p) >= MIN_PART and p != "/"}


def url_credentials(url: str) -> list[str]:
    """The password of `url`'s userinfo (https://user:pass@host), as written and decoded,
    and the Basic-auth form an HTTP client sends it in (a server may echo that back)."""
    try:
        parts = urlsplit(url)
        password, user = parts.password, parts.username
    except ValueError:
        return []
    if not password:
        return []
    basic = f"{unquote(user or '')}:{unquote(password)}"
    return [password, unquote(password), base64.b64encode(basic.encode()).decode()]


def forms(value: str) -> set[str]:
    """Every form in which `value` may come back quoted: itself and, for a URL, its path,
    query and token-like parts; each as written, percent-encoded (either hex case),
    form-encoded, JSON-escaped (with and without `\\/`) and HTML-escaped."""
    if len(value) < MIN_SECRET:
        return set()
    out: set[str] = set()
    for base in {value, *_url_parts(value)}:
        encoded = quote(base, safe="")
        json_form = json.dumps(base)[1:-1]
        out.update(
            {
                base,
                encoded,
                quote(base, safe="/"),
                quote(base, safe="/:?=&"),
                quote_plus(base),
                json_form,
                json_form.replace("/", "\\/"),
                html.escape(base),
            }
        )
    return {f for f in out if len(f) >= MIN_SECRET}


class Redactor:
    """Replaces every known secret, in each of its forms, in a text by `***`."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for s in secrets:
            self.add(s)

    def add(self, secret: Secret) -> None:
        self.add_value(secret.reveal())

    def add_value(self, value: str) -> None:
        """A secret known only as text (a database password, an API token)."""
        new = forms(value) - self._values
        if new:
            self._values |= new
            # Longest first: a form that contains another is replaced whole.
            ordered = sorted(self._values, key=len, reverse=True)
            # Case-insensitive: a proxy may lower-case a path, or upper-case its escapes.
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered), re.IGNORECASE)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def excerpt(self, text: str, limit: int = 200) -> str:
        """The first `limit` characters of `text`, scrubbed before it is cut: cutting first
        could leave the head of a secret that no longer matches. A mask (3 characters)
        replaces at least 4, so whatever lies past the scrubbed window would land past
        `limit` even after every replacement before it."""
        longest = max((len(v) for v in self._values), default=0)
        return self.scrub(text[: 4 * (limit + longest)])[:limit]
