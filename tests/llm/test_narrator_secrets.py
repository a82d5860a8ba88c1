"""A narrator whose base URL carries credentials: an endpoint echoing them back gets them
into no stored reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from engine.llm.narrator import Narrator
from engine.model import Incident

from .standin import Recorded, StandIn, openai_body


def test_credentials_in_the_base_url_never_reach_the_stored_reason(
    openai: StandIn, make_narrator: Callable[..., Narrator], incident: Incident
) -> None:
    """An endpoint that echoes the Basic-auth header httpx derives from the URL's userinfo."""
    password = "PLANT-url-password-4d3c2b"
    basic = base64.b64encode(f"narrator:{password}".encode()).decode()
    url = openai.url.replace("//", f"//narrator:{password}@")

    def echo(req: Recorded) -> tuple[int, bytes, float]:
        said = f"Run `{req.headers.get('authorization')}` on checkout-api."
        return 200, openai_body(said), 0.0

    openai.reply = echo
    result = make_narrator(url, provider="openai-compatible").narrate(incident)
    assert openai.requests[0].headers.get("authorization") == f"Basic {basic}"  # echoed
    assert result["source"] == "template" and "***" in result["llm_rejected"]
    assert password not in json.dumps(result) and basic not in json.dumps(result)
