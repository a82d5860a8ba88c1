"""Which rule directories a command uses, and loading them with every error printed.

Shared by `serve`, `test-rules` and `replay`; it sits below all three so none imports
another.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.paths import rules_dir

if TYPE_CHECKING:
    from engine.rules.ruleset import RuleSet

ENV_PREFIX = "INCIDENT_PILOT_"
SHIPPED = "shipped"  # `--rules shipped` stands for the rules that come with incident-pilot


def rule_dirs(values: Sequence[str] | None) -> list[Path]:
    """--rules values (or INCIDENT_PILOT_RULES, comma-separated); default: the shipped rules."""
    if not values:
        raw = os.environ.get(ENV_PREFIX + "RULES")
        values = [v for v in (raw or "").split(",") if v.strip()] if raw else []
    if not values:
        return [rules_dir()]
    return [rules_dir() if v == SHIPPED else Path(v).expanduser() for v in values]


def load_rules(dirs: list[Path]) -> RuleSet | None:
    """The rule set, or None after printing every error (warnings are printed too)."""
    # Imported here: the loader pulls in the schema checker and Jinja, which the CLI's
    # argument parsing (it imports this module for SHIPPED) should not pay for.
    from engine.rules.loader import load_ruleset

    for d in dirs:
        if not d.is_dir():
            sys.stderr.write(f"incident-pilot: rules directory {d} does not exist\n")
            return None
    ruleset, problems = load_ruleset(dirs)
    errors = [p for p in problems if p.level == "error"]
    for p in errors:
        sys.stderr.write(f"{p}\n")
    if errors:
        sys.stderr.write(
            f"incident-pilot: {len(errors)} error(s) in the rules; fix them first "
            "(lint-rules shows them all)\n"
        )
        return None
    return ruleset
