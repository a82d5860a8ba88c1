"""The delivery hook: narrate once per incident, store it beside the findings, reuse it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from engine.llm.config import LLMConfigError
from engine.llm.hook import PerKeyLock, delivery_narrator, llm_narrator
from engine.llm.narrator import Narrator
from engine.rules.ruleset import RuleSet
from engine.serialize import incident_to_dict
from engine.store import Store, open_store

from .conftest import build_incident, scenario
from .standin import Recorded, StandIn, ollama_body
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


def _incidents(ruleset: RuleSet, store: Store, n: int) -> list[str]:
    """n incidents of checkout-api (the same context, one alertname each)."""
    ids = []
    for i in range(n):
        raw = scenario()
        raw["alert"]["labels"]["alertname"] = f"HighErrorRate{i}"
        if i:
            raw["context"] = {}  # already stored
        ids.append(build_incident(ruleset, raw, store).id)
    return ids


def _narrate_at_once(hook: Any, snapshots: list[dict[str, Any]]) -> tuple[float, list[Any]]:
    start = time.monotonic()
    with ThreadPoolExecutor(len(snapshots)) as pool:
        texts = list(pool.map(lambda s: hook(s, "trigger"), snapshots))
    return time.monotonic() - start, texts


def test_incidents_are_narrated_concurrently(
    ollama: StandIn,
    make_narrator: Callable[..., Narrator],
    shipped_rules: RuleSet,
    store: Store,
) -> None:
    """Four incidents, an LLM that takes 2 s per answer: about 2 s in all, not 8 (one
    narration must not wait for another incident's)."""
    ids = _incidents(shipped_rules, store, 4)

    def reply(req: Recorded) -> tuple[int, bytes, float]:
        [iid] = [i for i in ids if i in req.prompt]
        return 200, ollama_body(GOOD.format(id=iid)), 2.0

    ollama.reply = reply
    hook = delivery_narrator(make_narrator(ollama, timeout="20"), store)
    snapshots = [incident_to_dict(store.get_incident(i)) for i in ids]  # type: ignore[arg-type]
    elapsed, texts = _narrate_at_once(hook, snapshots)
    assert texts == [GOOD.format(id=i) for i in ids]
    assert len(ollama.requests) == 4
    assert elapsed < 5.0, f"4 narrations of 2 s each took {elapsed:.1f} s"


def test_racing_senders_of_one_incident_ask_the_llm_once(
    ollama: StandIn,
    make_narrator: Callable[..., Narrator],
    shipped_rules: RuleSet,
    store: Store,
) -> None:
    [iid] = _incidents(shipped_rules, store, 1)
    ollama.answer(GOOD.format(id=iid), delay=0.5)
    hook = delivery_narrator(make_narrator(ollama, timeout="20"), store)
    snapshot = incident_to_dict(store.get_incident(iid))  # type: ignore[arg-type]
    _, texts = _narrate_at_once(hook, [snapshot] * 4)
    assert texts == [GOOD.format(id=iid)] * 4
    assert len(ollama.requests) == 1


def test_per_key_lock_forgets_keys_nobody_holds() -> None:
    locks = PerKeyLock()
    with locks.hold("a"), locks.hold("b"):
        assert len(locks) == 2
    assert len(locks) == 0
