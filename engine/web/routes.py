"""Where the pages live: one prefix and the path of each page, shared by everything that
links to a page (sinks, rule templates, the CLI) so a link and its route never drift."""

from __future__ import annotations

from urllib.parse import quote

PAGE_PREFIX = "/ui"
STATIC_PREFIX = PAGE_PREFIX + "/static"
LOGIN_PATH = PAGE_PREFIX + "/login"
LOGOUT_PATH = PAGE_PREFIX + "/logout"
INCIDENTS_PATH = PAGE_PREFIX + "/incidents"
RULES_PATH = PAGE_PREFIX + "/rules"
DELIVERIES_PATH = PAGE_PREFIX + "/deliveries"


def _seg(value: object) -> str:
    return quote(str(value), safe="")


def incident_page_path(incident_id: object) -> str:
    """The page of one incident, e.g. `/ui/incidents/42`."""
    return f"{INCIDENTS_PATH}/{_seg(incident_id)}"


def incident_page_url(base_url: str, incident_id: object) -> str:
    """An absolute link to an incident's page under `base_url` (the `--public-url`)."""
    return base_url.rstrip("/") + incident_page_path(incident_id)


def context_page_path(kind: str, record_id: object) -> str:
    """The page of one stored context record (`kind`: deploys, logs, traces, ...)."""
    return f"{PAGE_PREFIX}/context/{_seg(kind)}/{_seg(record_id)}"


def table_page_path(table: str, key: object) -> str:
    return f"{PAGE_PREFIX}/tables/{_seg(table)}/{_seg(key)}"


def pull_page_path(incident_id: object, n: object) -> str:
    return f"{PAGE_PREFIX}/pulls/{_seg(incident_id)}/{_seg(n)}"


def evidence_page_path(path: str) -> str | None:
    """The page for an evidence path (`context/deploys/7`, `incidents/3`, `tables/t/k`,
    `pulls/3/1`), or None when the path names no stored record (e.g. `alert/labels/x`)."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "context":
        return context_page_path(parts[1], "/".join(parts[2:]))
    if len(parts) >= 2 and parts[0] == "incidents":
        return incident_page_path(parts[1])
    if len(parts) >= 3 and parts[0] == "tables":
        return table_page_path(parts[1], "/".join(parts[2:]))
    if len(parts) >= 3 and parts[0] == "pulls":
        return pull_page_path(parts[1], parts[2])
    return None
