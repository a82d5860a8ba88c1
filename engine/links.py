"""Where a person opens an incident: its page, under the service's public URL.

Every link the service sends (Slack, PagerDuty, Opsgenie, webhook, stdout) and the
`incident_url` filter of rule templates are built here, so they all point at the page.
"""

from __future__ import annotations

from urllib.parse import quote

PAGE_PREFIX = "/ui"


def incident_page_path(incident_id: str) -> str:
    """The incident page's path (the web pages serve it)."""
    return f"{PAGE_PREFIX}/incidents/{quote(str(incident_id), safe='')}"


def incident_url(public_url: str, incident_id: str) -> str:
    """The incident page's address under `public_url` (`--public-url`); the bare path when
    there is none (offline tools: replay, test-rules, lint)."""
    return public_url.rstrip("/") + incident_page_path(incident_id)
