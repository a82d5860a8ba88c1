"""The narrator as engine.delivery's NARRATION HOOK, with the narration stored on the incident.

`delivery_narrator(narrator, store)` returns the callable `OutboxWorker(narrator=...)` takes:
`(incident snapshot, event) -> text | None`. For an incident's first message (`trigger`) it
narrates once, stores the result with `store.set_narration` (beside the findings, which stay
untouched) and returns the LLM text, or None so the sink sends the template narration. Later
messages and retries reuse the stored narration: the LLM is asked at most once per incident.
`update` and `resolve` messages get None: the template describes those events exactly.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from engine.llm.narrator import Narrator, OnOutcome, TemplateSource
from engine.store.base import Store

log = logging.getLogger("incident_pilot.llm")
NARRATED_EVENTS = ("trigger",)
DeliveryNarrator = Callable[[Mapping[str, Any], str], str | None]


def _text(narration: Mapping[str, Any] | None) -> str | None:
    if narration and narration.get("source") == "llm":
        text = narration.get("text")
        return text if isinstance(text, str) and text else None
    return None


class PerKeyLock:
    """One lock per key, held only while someone uses it: senders of the same incident
    wait for each other, senders of different incidents never do."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[str, tuple[threading.Lock, int]] = {}  # key -> (lock, users)

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._held.get(key, (threading.Lock(), 0))
            self._held[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._held[key]
                if users == 1:
                    del self._held[key]
                else:
                    self._held[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._held)


def delivery_narrator(narrator: Narrator, store: Store) -> DeliveryNarrator:
    # One LLM call per incident even if two senders race, and no wait for another
    # incident's narration (each may take the LLM's whole timeout).
    locks = PerKeyLock()

    def narrate(snapshot: Mapping[str, Any], event: str) -> str | None:
        if event not in NARRATED_EVENTS:
            return None
        incident_id = str(snapshot.get("id") or "")
        if snapshot.get("narration"):
            return _text(snapshot["narration"])
        with locks.hold(incident_id):
            incident = store.get_incident(incident_id)
            if incident is None:
                return None
            if incident.narration:  # narrated by an earlier attempt
                return _text(incident.narration)
            narration = narrator.narrate(incident)
            try:
                store.set_narration(incident_id, narration)
            except Exception:  # the message still goes out; the next attempt asks again
                log.exception("could not store the narration of %s", incident_id)
        return _text(narration)

    return narrate


def known_names(ownership: Iterable[Any]) -> set[str]:
    """Services and teams of the ownership table (RuleSet.ownership)."""
    names: set[str] = set()
    for entry in ownership:
        names.update(n for n in (getattr(entry, "service", ""), getattr(entry, "team", "")) if n)
    return names


def llm_narrator(
    store: Store,
    ownership: Iterable[Any] = (),
    *,
    environ: Mapping[str, str] = os.environ,
    on_outcome: OnOutcome | None = None,
    templates: TemplateSource | None = None,
) -> DeliveryNarrator | None:
    """For `serve`: the delivery hook when INCIDENT_PILOT_LLM_PROVIDER is set, else None.
    Raises LLMConfigError (engine.llm.config) when the LLM settings are wrong. Each
    narration's outcome goes to `on_outcome` (the server's metrics); `templates` gives the
    rules' templates in use, which alone may ground a command."""
    narrator = Narrator.from_env(
        environ, known_names=known_names(ownership), on_outcome=on_outcome, templates=templates
    )
    return delivery_narrator(narrator, store) if narrator is not None else None
