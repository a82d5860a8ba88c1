"""The redactor: a secret is scrubbed in every form a receiver or proxy may echo it in."""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus

import pytest

from engine.delivery.secrets import MASK, Redactor, Secret

SLACK = "https://hooks.slack.com/services/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"
PATH = "/services/T0123ABCD/B0456EFGH/Xk9pQ2rT7vW4yZ1aB3cD5eF8"
TOKEN = "Xk9pQ2rT7vW4yZ1aB3cD5eF8"
WITH_QUERY = "https://hooks.example.net/in/abc?token=qs-token-77aa91&team=ops"


def redactor(*values: str) -> Redactor:
    return Redactor(Secret(v, f"env:S{i}") for i, v in enumerate(values))


@pytest.mark.parametrize(
    "echo",
    [
        f"invalid url {SLACK}",
        f"POST {PATH} HTTP/1.1 not found",  # a proxy echoing the request line
        f"no_service: {PATH.lstrip('/')}",
        f"invalid_token {TOKEN}",
        f'{{"path": {json.dumps(PATH)}}}',
        f"path={quote(PATH, safe='')}",
        f"path={quote(PATH, safe='').lower()}",
        f"next={quote_plus(SLACK)}",
        f'{{"url": "{SLACK.replace("/", chr(92) + "/")}"}}',  # JSON with escaped slashes
        f"not found: {PATH.lower()}",  # a proxy that lower-cases paths
    ],
)
def test_a_secret_url_is_scrubbed_in_every_echoed_form(echo: str) -> None:
    out = redactor(SLACK).scrub(echo)
    assert TOKEN not in out and TOKEN.lower() not in out.lower()
    assert MASK in out


def test_the_query_of_a_secret_url_is_scrubbed_too() -> None:
    r = redactor(WITH_QUERY)
    for echo in ("GET /in/abc?token=qs-token-77aa91&team=ops", "token=qs-token-77aa91"):
        assert "qs-token-77aa91" not in r.scrub(echo)


@pytest.mark.parametrize(
    "secret", ["pd-routing-key-R0uT1nG", 'gk "quoted" <key> & more', "clé-secrète-ünïcode-01"]
)
def test_a_plain_secret_is_scrubbed_escaped_or_encoded(secret: str) -> None:
    r = redactor(secret)
    for form in (
        secret,
        json.dumps(secret),
        json.dumps(secret, ensure_ascii=False),
        quote(secret, safe=""),
        html.escape(secret),
    ):
        assert r.scrub(f"echo: {form} end") in {f"echo: {MASK} end", f'echo: "{MASK}" end'}


def test_words_of_the_url_that_are_no_secret_stay() -> None:
    out = redactor(SLACK).scrub("hooks.slack.com services answered 404")
    assert out == "hooks.slack.com services answered 404"


def test_short_values_are_not_secrets() -> None:
    assert redactor("abc").scrub("abc abc") == "abc abc"


def test_an_excerpt_never_keeps_the_head_of_a_cut_secret() -> None:
    r = redactor(SLACK)
    for offset in range(150, 201, 7):
        text = "x" * offset + PATH + "y" * 300
        out = r.excerpt(text, 200)
        assert len(out) == 200
        assert "/services/T0123" not in out and "Xk9p" not in out
    many = (PATH + " ") * 100  # every mask shortens the text: nothing past it slips in
    assert "services/T0" not in r.excerpt(many, 200)
