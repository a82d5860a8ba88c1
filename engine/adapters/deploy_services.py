"""The service table of the deploy webhooks (`--deploy-services FILE`).

GitHub names a repository (`acme/checkout`), GitLab a project path (`acme/checkout`),
Argo CD an application (`checkout-prod`); the rules match deploys on the service the
alerts carry (`service: checkout-api`). The table says which is which:

    services:
      - {repository: acme/checkout, service: checkout-api}
      - {repository: acme/monorepo, environment: staging, service: gateway-staging}
      - {repository: acme/monorepo, service: gateway}
      - {application: checkout-prod, service: checkout-api}

An entry with an `environment` wins over one without, whatever their order; the same
key twice is a problem. Anything unmapped keeps its own short name: the repository's
last path segment (`checkout`) or the application name.

Read with the rule loader's YAML reader and checked against
schemas/deploy-services.schema.json, so a mistake is reported at `file:line:col`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.rules.problems import Problem
from engine.rules.schema_check import validate_document
from engine.rules.yamlsrc import load_yaml

SCHEMA = "deploy-services.schema.json"
ANY = ""  # the environment of an entry that names none


@dataclass(frozen=True)
class ServiceTable:
    """(kind, name, environment) -> service; kind is "repository" or "application"."""

    entries: dict[tuple[str, str, str], str] = field(default_factory=dict)
    source: str | None = None

    def lookup(self, kind: str, name: str, environment: str | None, default: str) -> str:
        env = environment or ANY
        for key in ((kind, name, env), (kind, name, ANY)):
            if key in self.entries:
                return self.entries[key]
        return default

    def __len__(self) -> int:
        return len(self.entries)


def load_service_table(path: str | Path | None) -> tuple[ServiceTable | None, list[Problem]]:
    """The table in `path` (None or "": an empty one). (None, problems) when unusable."""
    if not path:
        return ServiceTable(), []
    display = str(path)
    doc, problems = load_yaml(Path(path).expanduser(), display)
    if doc is None:
        return None, problems
    problems += validate_document(doc, SCHEMA)
    if any(p.level == "error" for p in problems):
        return None, problems
    entries: dict[tuple[str, str, str], str] = {}
    seen: dict[tuple[str, str, str], int] = {}
    for i, entry in enumerate(doc.data["services"]):
        kinds = [k for k in ("repository", "application") if k in entry]
        if len(kinds) != 1:
            problems.append(
                Problem(
                    doc.location(("services", i)),
                    "give exactly one of repository (GitHub, GitLab) and application (Argo CD)",
                    "schema",
                    key_path=("services", i),
                )
            )
            continue
        kind = kinds[0]
        key = (kind, entry[kind], entry.get("environment", ANY))
        if key in seen:
            where = f" in environment {key[2]!r}" if key[2] else ""
            first = doc.location(("services", seen[key])).line
            problems.append(
                Problem(
                    doc.location(("services", i)),
                    f"{kind} {key[1]!r}{where} is already mapped (line {first})",
                    "duplicate",
                    key_path=("services", i),
                )
            )
            continue
        seen[key] = i
        entries[key] = entry["service"]
    if problems:
        return None, problems
    return ServiceTable(entries, display), []
