"""Where a person opens an incident: its page, under the service's public URL.

Every link the service sends (Slack, PagerDuty, Opsgenie, webhook, stdout), the
`incident_url` filter of rule templates and the command line's `page:` line are built
here, from the pages' own routes (engine.web.routes), so a link and its page never drift.
"""

from __future__ import annotations

from engine.web.routes import PAGE_PREFIX, incident_page_path, incident_page_url

__all__ = ["PAGE_PREFIX", "incident_page_path", "incident_url"]


def incident_url(public_url: str, incident_id: str) -> str:
    """The incident page's address under `public_url` (`--public-url`); the bare path when
    there is none (offline tools: replay, test-rules, lint)."""
    return incident_page_url(public_url, incident_id)
