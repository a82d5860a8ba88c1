"""Deploy webhooks: a GitHub, GitLab or Argo CD body -> the body `/context/deploys` takes.

Each `*_deploy` function reads one provider's (already authenticated, already parsed)
JSON and returns either a `Deploy` (the {service, commit, author, when, ...} object
`engine.ingest.parse_record` turns into the very record `/context/deploys` stores) or an
`Ignored` saying why nothing is stored (a ping, a pending deployment, another event).
A body that claims to be a deployment but lacks what one needs raises `PayloadError`
naming the field. Nothing here knows about HTTP or secrets (engine/server/hooks.py).

Attributes kept on every record: `source` (github, gitlab, argocd), `environment` and
`url` when the provider gives them, and the repository or application name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.adapters.deploy_services import ServiceTable
from engine.alerts import PayloadError, _type
from engine.timeutil import TimeFormatError, format_ts, parse_ts

# Go's text/template prints a missing field as "<no value>": an Argo CD template whose
# field is absent for this application sends that, which means "not given".
NO_VALUE = "<no value>"
_COMMIT_URL = re.compile(r"/commit/([0-9a-fA-F]{7,64})/?$")
# GitLab's webhook times: "2021-04-28 21:50:00 +0200" (and "... UTC" in some events).
_GITLAB_FORMATS = ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S %Z")


@dataclass(frozen=True)
class Deploy:
    body: dict[str, Any]  # a /context/deploys object


@dataclass(frozen=True)
class Ignored:
    note: str


def _obj(parent: Any, key: str, where: str, required: bool = True) -> dict[str, Any]:
    value = parent.get(key) if isinstance(parent, dict) else None
    path = f"{where}.{key}" if where else key
    if value is None:
        if required:
            raise PayloadError(path, "is required")
        return {}
    if not isinstance(value, dict):
        raise PayloadError(path, f"must be an object, got {_type(value)}")
    return value


def _str(parent: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    """A string field; "" and Go's "<no value>" count as absent."""
    value = parent.get(key)
    path = f"{where}.{key}" if where else key
    if value is not None and not isinstance(value, str):
        raise PayloadError(path, f"must be a string, got {_type(value)}")
    if value is None or not value.strip() or value.strip() == NO_VALUE:
        if required:
            raise PayloadError(path, "is required (a non-empty string)")
        return None
    return value.strip()


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v), None)


def _record(
    service: str,
    commit: str,
    author: str | None,
    when: str | None,
    **attributes: str | None,
) -> Deploy:
    body: dict[str, Any] = {"service": service, "commit": commit}
    if author:
        body["author"] = author
    if when:
        body["when"] = when
    body.update({k: v for k, v in attributes.items() if v})
    return Deploy(body)


def _short_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path


# --- GitHub ---------------------------------------------------------------------------


def github_deploy(event: str, body: Any, table: ServiceTable) -> Deploy | Ignored:
    """`X-GitHub-Event` and its body. Only a `deployment_status` whose state is `success`
    is a deploy; `ping` and every other event are acknowledged and not stored."""
    if event == "ping":
        hook = body.get("hook_id") if isinstance(body, dict) else None
        return Ignored(f"ping received (hook {hook}); deploys arrive as deployment_status events")
    if event != "deployment_status":
        return Ignored(
            f'{event!r} events are not stored: subscribe this webhook to "Deployment statuses" only'
        )
    if not isinstance(body, dict):
        raise PayloadError("", f"the body must be a JSON object, got {_type(body)}")
    status = _obj(body, "deployment_status", "")
    deployment = _obj(body, "deployment", "")
    state = _str(status, "state", "deployment_status", required=True)
    if state != "success":
        return Ignored(f"deployment_status state {state!r} is not stored; only 'success' is")
    repository = _obj(body, "repository", "")
    full_name = _str(repository, "full_name", "repository", required=True)
    assert full_name is not None
    environment = _first(
        _str(deployment, "environment", "deployment"),
        _str(status, "environment", "deployment_status"),
    )
    default = _str(repository, "name", "repository") or _short_name(full_name)
    commit = _str(deployment, "sha", "deployment", required=True)
    assert commit is not None
    author = _first(
        _str(_obj(deployment, "creator", "deployment", False), "login", "deployment.creator"),
        _str(_obj(body, "sender", "", False), "login", "sender"),
    )
    when = _first(
        _str(status, "updated_at", "deployment_status"),
        _str(status, "created_at", "deployment_status"),
    )
    url = _first(
        _str(status, "target_url", "deployment_status"),
        _str(status, "environment_url", "deployment_status"),
        _str(status, "log_url", "deployment_status"),
    )
    return _record(
        table.lookup("repository", full_name, environment, default),
        commit,
        author,
        when,
        source="github",
        repository=full_name,
        environment=environment,
        url=url,
        ref=_str(deployment, "ref", "deployment"),
    )


# --- GitLab ---------------------------------------------------------------------------


def _gitlab_time(text: str | None, where: str) -> str | None:
    if text is None:
        return None
    try:
        return format_ts(parse_ts(text))
    except TimeFormatError:
        pass
    for fmt in _GITLAB_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if parsed.tzinfo is None:  # "%Z" accepts only UTC and GMT, and leaves it naive
            parsed = parsed.replace(tzinfo=UTC)
        return format_ts(parsed)
    raise PayloadError(where, f"{text!r} is not a time (e.g. 2021-04-28 21:50:00 +0200)")


def gitlab_deploy(event: str, body: Any, table: ServiceTable) -> Deploy | Ignored:
    """`X-Gitlab-Event` and its body. Only a `Deployment Hook` whose status is `success`
    is a deploy; other events and statuses are acknowledged and not stored."""
    if event != "Deployment Hook":
        return Ignored(
            f"{event!r} events are not stored: enable only Deployment events on this webhook"
        )
    if not isinstance(body, dict):
        raise PayloadError("", f"the body must be a JSON object, got {_type(body)}")
    kind = _str(body, "object_kind", "")
    if kind != "deployment":
        raise PayloadError(
            "object_kind", f"must be 'deployment' for a Deployment Hook, got {kind!r}"
        )
    status = _str(body, "status", "", required=True)
    if status != "success":
        return Ignored(f"deployment status {status!r} is not stored; only 'success' is")
    project = _obj(body, "project", "")
    path = _str(project, "path_with_namespace", "project", required=True)
    assert path is not None
    environment = _str(body, "environment", "")
    # The payload has no full SHA field: commit_url ends with it, short_sha is 8 digits.
    commit_url = _str(body, "commit_url", "")
    match = _COMMIT_URL.search(commit_url or "")
    commit = _first(_str(body, "sha", ""), match.group(1) if match else None)
    commit = commit or _str(body, "short_sha", "", required=True)
    assert commit is not None
    user = _obj(body, "user", "", False)
    author = _first(_str(user, "username", "user"), _str(user, "name", "user"))
    return _record(
        table.lookup("repository", path, environment, _short_name(path)),
        commit,
        author,
        _gitlab_time(_str(body, "status_changed_at", ""), "status_changed_at"),
        source="gitlab",
        repository=path,
        environment=environment,
        url=_first(_str(body, "deployable_url", ""), _str(body, "environment_external_url", "")),
        ref=_str(body, "ref", ""),
    )


# --- Argo CD --------------------------------------------------------------------------


def argocd_deploy(body: Any, table: ServiceTable) -> Deploy | Ignored:
    """The body of the `app-deployed` template in docs/INGEST.md: {app, revision,
    finishedAt?, author?, repoURL?, destination?, url?, environment?, project?}."""
    if not isinstance(body, dict):
        raise PayloadError("", f"the body must be a JSON object, got {_type(body)}")
    app = _str(body, "app", "", required=True)
    assert app is not None
    revision = _str(body, "revision", "", required=True)
    assert revision is not None
    environment = _str(body, "environment", "")
    destination = _obj(body, "destination", "", False)
    target = "/".join(
        part
        for part in (
            _str(destination, "server", "destination") or _str(destination, "name", "destination"),
            _str(destination, "namespace", "destination"),
        )
        if part
    )
    return _record(
        table.lookup("application", app, environment, app),
        revision,
        _str(body, "author", ""),
        _str(body, "finishedAt", ""),
        source="argocd",
        application=app,
        project=_str(body, "project", ""),
        repository=_str(body, "repoURL", ""),
        destination=target or None,
        environment=environment,
        url=_str(body, "url", ""),
    )
