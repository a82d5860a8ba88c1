"""Unknown INCIDENT_PILOT_* variables: a typo in a deployment's environment (TOKEN for
TOKENS, RETENTON) silently leaves a setting at its default, so `serve` warns about every
variable it does not know, with the nearest known name."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Iterable, Mapping

from engine.adapters.deploy_config import SECRETS as HOOK_SECRETS
from engine.server.settings import ENV_PREFIX, add_serve_arguments

# Variables read without a flag of their own (a flag's variable is named in its help).
OTHER_VARIABLES = (
    "RULES",  # --rules, comma-separated
    "TOKENS",
    "SLACK_WEBHOOK",
    "DB_POOL_SIZE",
    *(f"LLM_{n}" for n in ("PROVIDER", "BASE_URL", "MODEL", "TIMEOUT", "API_KEY", "API_KEY_FILE")),
    *(n + suffix for n, _ in HOOK_SECRETS.values() for suffix in ("", "_FILE")),
    # The incidents command line (a client of the API, often run where the server runs).
    "URL",
    "API_TOKEN",
    # The test suite's.
    "TEST_POSTGRES_DSN",
)
_NAME = re.compile(rf"{ENV_PREFIX}[A-Z0-9_]+")


def known_variables(extra: Iterable[str] = ()) -> frozenset[str]:
    """Every INCIDENT_PILOT_* variable the service or its tools read, plus `extra` (the
    variables the delivery configuration names for its secrets, which may be anything)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_serve_arguments(parser)
    names = {n for a in parser._actions for n in _NAME.findall(a.help or "")}
    names.update(ENV_PREFIX + n for n in OTHER_VARIABLES)
    names.update(extra)
    return frozenset(names)


def unknown_variable_warnings(
    environ: Mapping[str, str], known: frozenset[str] | None = None
) -> list[str]:
    """One sentence per INCIDENT_PILOT_* variable in `environ` that nothing reads."""
    known = known_variables() if known is None else known
    out = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        # Compared without the prefix, which every name shares.
        suffixes = sorted(k.removeprefix(ENV_PREFIX) for k in known)
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1, cutoff=0.7)
        hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
        out.append(f"unknown variable {name} is ignored{hint}")
    return out
