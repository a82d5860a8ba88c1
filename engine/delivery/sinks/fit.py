"""Text that fits a receiving service's limits, measured the way that service measures.

Slack and Opsgenie count a string's length in UTF-16 code units (a JavaScript / Java
`length`: an emoji outside the Basic Multilingual Plane counts 2), so every limit here is
applied in UTF-16 units. That is never fewer than code points, so the same cut also keeps
a limit written in code points (PagerDuty's `summary`). A cut never splits a surrogate
pair, and a cut text ends with a visible marker.
"""

from __future__ import annotations

import json
import re
from typing import Any

MARK = "…"
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,4}$")  # a cut inside mrkdwn's &amp; / &lt; / &gt;


def utf16_len(text: str) -> int:
    """The length of `text` in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: Any, limit: int, mark: str = MARK) -> str:
    """`text` (made a string) cut to at most `limit` UTF-16 units, ending with `mark`
    when it was cut."""
    text = str(text)
    if utf16_len(text) <= limit:
        return text
    room = max(0, limit - utf16_len(mark))
    units = text.encode("utf-16-le")[: room * 2]
    cut = units.decode("utf-16-le", errors="ignore")  # drops half a surrogate pair
    cut = _PARTIAL_ENTITY.sub("", cut)
    return (cut + mark) if utf16_len(cut + mark) <= limit else cut


def json_size(doc: Any) -> int:
    """The size in bytes of `doc` as the sinks send it (json.dumps, UTF-8)."""
    return len(json.dumps(doc).encode("utf-8"))


def details_size(details: dict[str, str]) -> int:
    """Opsgenie's `details` total: every key and value, in UTF-16 units."""
    return sum(utf16_len(k) + utf16_len(v) for k, v in details.items())
