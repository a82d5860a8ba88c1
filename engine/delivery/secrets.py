"""Secrets for sinks: read from an environment variable or a file, never from the config.

A `Secret` prints as `***` (repr, str, f-strings, logging), so passing one to a log call
or an error message by mistake cannot leak it; `reveal()` is the only way to the value.
A `Redactor` scrubs every known secret value out of text that may quote it (an error
from a library, a response body echoing a URL) before it is logged or stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

MASK = "***"
MAX_SECRET_FILE = 64 * 1024


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


class Redactor:
    """Replaces every known secret value in a text by `***`."""

    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self._values: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: Secret) -> None:
        value = secret.reveal()
        if len(value) >= 4:  # a 1-3 character "secret" would mask half the log
            self._values.add(value)

    def scrub(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text
