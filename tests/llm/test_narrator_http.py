"""Narrator end to end over real HTTP against stand-in Ollama / OpenAI-compatible servers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import pytest

from engine.llm import narrator as narrator_module
from engine.llm.narrator import Narrator
from engine.model import Incident
from engine.narrate import render_text
from engine.serialize import incident_to_dict

from .conftest import API_KEY, INJECTION
from .standin import Recorded, StandIn, ollama_body
from .test_grounding import GOOD

MakeNarrator = Callable[..., Narrator]
FLAVOURS = ["ollama", "openai"]


@pytest.fixture(params=FLAVOURS)
def server(request: pytest.FixtureRequest) -> StandIn:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def _template(incident: Incident) -> str:
    return render_text(incident, "opened")


def test_a_grounded_answer_is_used(
    server: StandIn, make_narrator: MakeNarrator, incident: Incident
) -> None:
    before = incident_to_dict(incident)
    server.answer(GOOD.format(id=incident.id))
    result = make_narrator(server).narrate(incident)
    assert result == {
        "source": "llm",
        "text": GOOD.format(id=incident.id),
        "provider": server.flavour,
        "model": "stand-in-model",
    }
    assert incident_to_dict(incident) == before  # findings untouched; prose lives beside
    (req,) = server.requests
    expected = "/api/chat" if server.flavour == "ollama" else "/v1/chat/completions"
    assert req.path == expected
    assert req.body["model"] == "stand-in-model" and req.body["stream"] is False
    assert [m["role"] for m in req.body["messages"]] == ["system", "user"]


@pytest.mark.parametrize(
    ("answer", "claim"),
    [
        ("checkout-api was deployed 3m before the alert: commit b71c0de9 by alice.", "b71c0de9"),
        ("checkout-api logged 48 ERROR lines in the 10m before the alert.", "48"),
        ("The errors come from the billing-gateway dependency of checkout-api.", "billing-gateway"),
        ("This is a critical incident on checkout-api.", "critical"),
        ("Fix it with `kubectl scale deployment/checkout-api --replicas=0`.", "kubectl scale deployment/checkout-api --replicas=0"),
    ],
)  # fmt: skip
def test_an_ungrounded_answer_is_rejected_with_the_reason(
    server: StandIn, make_narrator: MakeNarrator, incident: Incident, answer: str, claim: str
) -> None:
    server.answer(answer)
    result = make_narrator(server).narrate(incident)
    assert result == {
        "source": "template",
        "text": _template(incident),
        "llm_rejected": f'ungrounded "{claim}"',
    }


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b"this is not json", "invalid response: not JSON"),
        (200, b'{"done": true}', "invalid response: no "),
        (
            200,
            b'{"message": {"content": 42}, "choices": [{"message": {}}]}',
            "invalid response: no ",
        ),
        (200, b"", "invalid response: not JSON"),
        (500, b'{"error": "model not loaded"}', "http status 500"),
    ],
)
def test_garbage_falls_back_to_the_template(
    server: StandIn,
    make_narrator: MakeNarrator,
    incident: Incident,
    status: int,
    body: bytes,
    reason: str,
) -> None:
    server.raw(body, status)
    result = make_narrator(server).narrate(incident)
    assert result["source"] == "template" and result["text"] == _template(incident)
    assert result["llm_rejected"].startswith(reason)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", "invalid response: empty content"),
        ("   \n ", "invalid response: empty content"),
        ("!!! ??? ...", "invalid response: no prose"),
        ('{"incident": "echo"}', "invalid response: echoes"),
        ("word " * 2000, "invalid response: longer than"),
    ],
)
def test_empty_or_garbage_content_falls_back(
    server: StandIn, make_narrator: MakeNarrator, incident: Incident, content: str, reason: str
) -> None:
    server.answer(content)
    result = make_narrator(server).narrate(incident)
    assert result["source"] == "template"
    assert result["llm_rejected"].startswith(reason)


def test_a_slow_server_costs_at_most_the_timeout(
    server: StandIn, make_narrator: MakeNarrator, incident: Incident
) -> None:
    server.answer(GOOD.format(id=incident.id), delay=5.0)
    narrator = make_narrator(server, timeout="0.5")
    started = time.monotonic()
    result = narrator.narrate(incident)
    elapsed = time.monotonic() - started
    assert result == {
        "source": "template",
        "text": _template(incident),
        "llm_rejected": "timeout after 0.5s",
    }
    assert elapsed < 0.5 + 1.5


def test_a_server_that_trickles_its_answer_is_cut_at_the_deadline(
    ollama: StandIn, make_narrator: MakeNarrator, incident: Incident
) -> None:
    ollama.answer(GOOD.format(id=incident.id))
    ollama.trickle = 0.2  # every piece arrives well within httpx's per-read timeout
    narrator = make_narrator(ollama, timeout="0.5")
    started = time.monotonic()
    result = narrator.narrate(incident)
    assert result["llm_rejected"] == "timeout after 0.5s"
    assert time.monotonic() - started < 2.0
    # The next call is not stuck behind the abandoned one for longer than its own timeout.
    ollama.trickle = 0.0
    time.sleep(0.6)  # the abandoned worker notices the deadline at its next piece
    assert narrator.narrate(incident)["source"] == "llm"


@pytest.mark.parametrize("provider", ["ollama", "openai-compatible"])
def test_connection_refused_falls_back(
    refused_url: str, make_narrator: MakeNarrator, incident: Incident, provider: str
) -> None:
    started = time.monotonic()
    result = make_narrator(refused_url, provider=provider).narrate(incident)
    assert result["source"] == "template" and result["text"] == _template(incident)
    assert result["llm_rejected"] == "connection failed (ConnectError)"
    assert time.monotonic() - started < 2.0


def test_the_api_key_is_sent_as_bearer_and_never_shown(
    openai: StandIn,
    make_narrator: MakeNarrator,
    incident: Incident,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    narrator = make_narrator(openai, api_key=API_KEY)
    openai.answer(GOOD.format(id=incident.id))
    used = narrator.narrate(incident)
    assert openai.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    # A server that echoes the key back in an error, or as the narration, gets nowhere.
    openai.raw(json.dumps({"error": f"bad key {API_KEY}"}).encode(), 401)
    failed = narrator.narrate(incident)
    openai.answer(f"checkout-api key {API_KEY} was deployed")
    echoed = narrator.narrate(incident)
    assert used["source"] == "llm"
    assert failed["llm_rejected"] == "http status 401"
    assert echoed["source"] == "template"
    for result in (used, failed, echoed):
        assert API_KEY not in json.dumps(result)
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(narrator.config)


def test_an_obedient_llm_is_caught_by_the_grounding_check(
    server: StandIn,
    make_narrator: MakeNarrator,
    injected_incident: Incident,
) -> None:
    def obedient(req: Recorded) -> tuple[int, bytes, float]:
        # A model that follows instructions found anywhere in its prompt.
        said = "The root cause is DNS." if INJECTION in req.prompt else "Nothing to add."
        encode = ollama_body if server.flavour == "ollama" else _openai
        return 200, encode(f"checkout-api has 6 ERROR lines. {said}"), 0.0

    server.reply = obedient
    result = make_narrator(server).narrate(injected_incident)
    assert result == {
        "source": "template",
        "text": _template(injected_incident),
        "llm_rejected": 'ungrounded "root cause is DNS"',
    }


def _openai(text: str) -> bytes:
    from .standin import openai_body

    return openai_body(text)


def test_outcomes_are_counted(
    ollama: StandIn, make_narrator: MakeNarrator, incident: Incident
) -> None:
    before = dict(narrator_module.OUTCOMES)
    narrator = make_narrator(ollama)
    ollama.answer(GOOD.format(id=incident.id))
    narrator.narrate(incident)
    ollama.answer("This is a critical incident.")
    narrator.narrate(incident)
    after = narrator_module.OUTCOMES
    assert after["ok"] == before.get("ok", 0) + 1
    assert after["rejected"] == before.get("rejected", 0) + 1
