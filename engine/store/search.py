"""The incidents' text search: a small term index, the same SQL on both engines.

When an incident opens, the words of its id, title, service, alertname, team and alert
label values are stored lowercased in `incident_terms` (term, incident_id), whose primary
key is an index on the term. A query `q` is split the same way; each of its words (at most
MAX_QUERY_WORDS) must be the prefix of some term of the incident: one index range per
word (`term >= 'word' AND term < 'wore'`), ANDed. So `q=api time` finds an incident
titled "upstream timeout on api-gateway". No ranking: results stay newest first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from engine.model import Alert
from engine.store import codec

_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # letters and digits; anything else separates
MAX_TERM = 64  # longer words are cut: a prefix still finds them
MAX_TERMS = 256  # per incident
MAX_QUERY_WORDS = 8


def words(text: str) -> list[str]:
    return [w[:MAX_TERM] for w in _WORD.findall(text.lower())]


def incident_terms(incident_id: str, title: str, team: str | None, alert: Alert) -> list[str]:
    """The distinct terms an incident is found by."""
    texts: Iterable[str] = (incident_id, title, team or "", *alert.labels.values())
    seen: dict[str, None] = {}
    for text in texts:
        for word in words(text):
            seen.setdefault(word)
            if len(seen) >= MAX_TERMS:
                return list(seen)
    return list(seen)


def insert_terms(conn: Any, incident_id: str, terms: Iterable[str]) -> None:
    rows = [(term, incident_id) for term in terms]
    if rows:
        conn.executemany(
            "INSERT INTO incident_terms (term, incident_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            rows,
        )


def query_words(q: str) -> list[str]:
    """The words of a search (empty: the search matches everything)."""
    return list(dict.fromkeys(words(q)))[:MAX_QUERY_WORDS]


def _after(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix` (code point
    order, which is the byte order of UTF-8 that both engines compare terms in)."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return prefix + "\U0010ffff"
    return prefix[:-1] + chr(last + 1)


def match_sql(q_words: list[str]) -> tuple[list[str], list[Any]]:
    """WHERE clauses (one per word) and their parameters: the incident has a term starting
    with each word."""
    clauses, args = [], []
    for word in q_words:
        clauses.append(
            "id IN (SELECT incident_id FROM incident_terms WHERE term >= ? AND term < ?)"
        )
        args += [word, _after(word)]
    return clauses, args


def index_unsearched(conn: Any) -> int:
    """Index the incidents that have no terms yet (opened before the term index existed);
    how many."""
    rows = conn.execute(
        "SELECT id, title, team, alert FROM incidents"
        " WHERE id NOT IN (SELECT incident_id FROM incident_terms)"
    ).fetchall()
    for incident_id, title, team, alert in rows:
        terms = incident_terms(incident_id, title, team, codec.alert_from_json(alert))
        insert_terms(conn, incident_id, terms)
    return len(rows)
