"""The deploy webhooks' configuration: each provider's secret, and the service table.

Read once at start by engine.server.state.build_state (a problem stops `serve`); the
receivers are engine.server.hooks.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.adapters.deploy_services import ServiceTable, load_service_table
from engine.delivery import secrets as sec

ENV_PREFIX = "INCIDENT_PILOT_"
MIN_SECRET_LENGTH = 16
# provider -> (variable naming the secret; what it is called in messages)
SECRETS = {
    "github": ("GITHUB_WEBHOOK_SECRET", "GitHub webhook secret"),
    "gitlab": ("GITLAB_WEBHOOK_TOKEN", "GitLab webhook secret token"),
    "argocd": ("ARGOCD_WEBHOOK_TOKEN", "Argo CD webhook token"),
}


@dataclass(frozen=True)
class HookConfig:
    secrets: dict[str, sec.Secret] = field(default_factory=dict)  # provider -> secret
    services: ServiceTable = field(default_factory=ServiceTable)


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
    config = HookConfig(secrets, table or ServiceTable())
    return config, problems


def add_hook_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--deploy-services",
        metavar="FILE",
        default=os.environ.get(ENV_PREFIX + "DEPLOY_SERVICES", ""),
        help="the deploy webhooks' service table (repository or Argo CD application -> "
        "service; see docs/INGEST.md), checked against schemas/deploy-services.schema.json "
        f"[env {ENV_PREFIX}DEPLOY_SERVICES]",
    )
