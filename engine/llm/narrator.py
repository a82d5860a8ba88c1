"""The narrator the delivery code calls: LLM prose when it is grounded, else the template.

    narrator = Narrator.from_env()           # None when INCIDENT_PILOT_LLM_PROVIDER is unset
    narration = narrator.narrate(incident)   # never raises; bounded by the timeout
    store.set_narration(incident.id, narration)

The structured incident is never changed: the narration is stored beside it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.delivery.secrets import Redactor
from engine.llm.commands import Templates
from engine.llm.config import LLMConfig, load_config
from engine.llm.grounding import check
from engine.llm.prompt import CLOSE_TAG, OPEN_TAG, build_messages
from engine.llm.providers import ChatClient, LLMError, redact
from engine.model import Incident
from engine.narrate import render_text

log = logging.getLogger("incident_pilot.llm")
MAX_PROSE = 4000  # characters: a longer answer is not a narration
# Narration outcomes since start (each also goes to the narrator's `on_outcome`, which the
# server points at its metrics).
OUTCOMES: Counter[str] = Counter()
_outcomes_lock = threading.Lock()
OnOutcome = Callable[[str], None]  # called with "ok", "rejected", "timeout", ...
TemplateSource = Callable[[], Templates]  # the rules in use now (they can be reloaded)


def _outcome(reason: str) -> str:
    if reason.startswith("ungrounded"):
        return "rejected"
    if reason.startswith("timeout"):
        return "timeout"
    if reason.startswith("invalid response"):
        return "invalid"
    return "error"


def clean_prose(text: str) -> str:
    """Trim the reply; reject what cannot be a narration (LLMError 'invalid response: ...')."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.DOTALL).strip()
    if not text:
        raise LLMError("invalid response: empty content")
    if len(text) > MAX_PROSE:
        raise LLMError(f"invalid response: longer than {MAX_PROSE} characters")
    if OPEN_TAG in text or CLOSE_TAG in text or text.lstrip().startswith(("{", "[")):
        raise LLMError("invalid response: echoes the incident data instead of narrating it")
    if len(re.findall(r"[A-Za-z]{2,}", text)) < 3:
        raise LLMError("invalid response: no prose")
    return text


class Narrator:
    """Built once at start; `narrate` is thread-safe and may run on several workers at once."""

    def __init__(
        self,
        config: LLMConfig,
        *,
        known_names: Iterable[str] = (),
        client: ChatClient | None = None,
        on_outcome: OnOutcome | None = None,
        templates: TemplateSource | None = None,
    ):
        """`templates`: the rule templates that may ground a command (engine.llm.commands);
        default: the shipped rules'."""
        self.config = config
        self.known_names = frozenset(n.lower() for n in known_names if n)
        self.client = client or ChatClient(config)
        self.on_outcome = on_outcome
        self.templates = templates
        self.redactor = Redactor()  # a reason may quote what an echoing endpoint sent back
        for value in config.secret_values():
            self.redactor.add_value(value)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        known_names: Iterable[str] = (),
        on_outcome: OnOutcome | None = None,
        templates: TemplateSource | None = None,
    ) -> Narrator | None:
        """None when INCIDENT_PILOT_LLM_PROVIDER is unset; raises LLMConfigError when the
        settings are wrong. `known_names`: services and teams the deployment knows (e.g. the
        ownership table); naming one that the incident does not mention is ungrounded.
        `on_outcome` hears of every narration's outcome (the server's metrics)."""
        config = load_config(environ)
        if config is None:
            return None
        log.info("LLM narration on: %s", config.describe())
        return cls(config, known_names=known_names, on_outcome=on_outcome, templates=templates)

    def _count(self, outcome: str) -> None:
        with _outcomes_lock:
            OUTCOMES[outcome] += 1
        if self.on_outcome is None:
            return
        try:
            self.on_outcome(outcome)
        except Exception:  # metrics must never break a narration
            log.debug("could not count narration outcome %s", outcome, exc_info=True)

    def narrate(self, incident: Incident) -> dict[str, Any]:
        """{"source": "llm", "text", "provider", "model"} when the prose is grounded, else
        {"source": "template", "text", "llm_rejected": reason}. Never raises."""
        try:
            template = render_text(incident, "opened")
        except Exception:
            log.exception("template narration failed for incident %s", incident.id)
            template = f"[{incident.severity.word.upper()}] {incident.title} ({incident.id})\n"
        try:
            prose = clean_prose(self.client.complete(build_messages(incident)))
            templates = self.templates() if self.templates is not None else None
            verdict = check(prose, incident, self.known_names, templates=templates)
            if not verdict.ok:
                raise LLMError(verdict.reason)
        except LLMError as exc:
            reason = exc.reason
        except Exception as exc:  # a bug here must not cost the incident its narration
            log.exception("LLM narration failed for incident %s", incident.id)
            reason = f"internal error ({type(exc).__name__})"
        else:
            self._count("ok")
            return {
                "source": "llm",
                "text": prose,
                "provider": self.config.provider,
                "model": self.config.model,
            }
        reason = self.redactor.scrub(redact(reason, self.config.api_key))
        outcome = _outcome(reason)
        self._count(outcome)
        # The reason may quote the prose (and so data): full text at debug level only; it is
        # also kept in the stored narration (`llm_rejected`).
        log.warning("LLM narration of %s not used (%s): template sent", incident.id, outcome)
        log.debug("LLM narration of %s rejected: %s", incident.id, reason)
        return {"source": "template", "text": template, "llm_rejected": reason}

    def close(self) -> None:
        self.client.close()
