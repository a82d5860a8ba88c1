"""The delivery hook: narrate once per incident, store it beside the findings, reuse it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from engine.llm.config import LLMConfigError
from engine.llm.hook import delivery_narrator, llm_narrator
from engine.llm.narrator import Narrator
from engine.rules.ruleset import RuleSet
from engine.serialize import incident_to_dict
from engine.store import Store, open_store

from .conftest import build_incident, scenario
from .standin import StandIn
from .test_grounding import GOOD


@pytest.fixture
def store() -> Iterator[Store]:
    s = open_store(":memory:")
    yield s
    s.close()


def test_trigger_is_narrated_once_and_stored(
    ollama: StandIn,
    make_narrator: Callable[..., Narrator],
    shipped_rules: RuleSet,
    store: Store,
) -> None:
    incident = build_incident(shipped_rules, scenario(), store)
    snapshot = incident_to_dict(incident)
    ollama.answer(GOOD.format(id=incident.id))
    hook = delivery_narrator(make_narrator(ollama), store)
    assert hook(snapshot, "trigger") == GOOD.format(id=incident.id)
    assert hook(snapshot, "trigger") == GOOD.format(id=incident.id)  # a retry, another sink
    assert hook(snapshot, "resolve") is None and hook(snapshot, "update") is None
    assert len(ollama.requests) == 1
    stored = store.get_incident(incident.id)
    assert stored is not None and stored.narration is not None
    assert stored.narration["source"] == "llm"
    assert stored.findings == incident.findings  # the structured incident is untouched


def test_a_rejected_narration_is_stored_with_its_reason(
    ollama: StandIn,
    make_narrator: Callable[..., Narrator],
    shipped_rules: RuleSet,
    store: Store,
) -> None:
    incident = build_incident(shipped_rules, scenario(), store)
    ollama.answer("This is a critical incident on checkout-api.")
    hook = delivery_narrator(make_narrator(ollama), store)
    assert hook(incident_to_dict(incident), "trigger") is None  # the sink sends the template
    stored = store.get_incident(incident.id)
    assert stored is not None and stored.narration is not None
    assert stored.narration["source"] == "template"
    assert stored.narration["llm_rejected"] == 'ungrounded "critical"'


def test_serve_wiring_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, store: Store, shipped_rules: RuleSet
) -> None:
    monkeypatch.delenv("INCIDENT_PILOT_LLM_PROVIDER", raising=False)
    assert llm_narrator(store, shipped_rules.ownership) is None
    monkeypatch.setenv("INCIDENT_PILOT_LLM_PROVIDER", "ollama")
    monkeypatch.setenv("INCIDENT_PILOT_LLM_MODEL", "m")
    assert callable(llm_narrator(store, shipped_rules.ownership))
    monkeypatch.setenv("INCIDENT_PILOT_LLM_PROVIDER", "chatgpt")
    with pytest.raises(LLMConfigError):
        llm_narrator(store, shipped_rules.ownership)
