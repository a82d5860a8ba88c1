"""Which secrets the running service holds, so that no log line or stored error quotes one.

`learn_secrets` teaches the delivery redactor (which already knows the sinks' secrets)
every other secret the process read: the deploy webhooks' secrets, the pull sources'
bearer tokens, the LLM API key and the store URL's passwords. `serve` then scrubs every
log line with it (engine.server.logs.scrub_secrets). API tokens are not among them: only
their SHA-256 digests are kept (engine.server.auth), and no request header or body is
logged.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from engine.adapters.deploy_config import HookConfig
from engine.delivery.secrets import Redactor
from engine.llm.config import load_config as load_llm_config
from engine.pull.config import PullConfig


def store_passwords(url: str) -> list[str]:
    if "://" not in url and "=" not in url:
        return []  # a SQLite path
    from engine.store.postgres_url import passwords  # only a URL store needs the driver

    return passwords(url)


def learn_secrets(
    redactor: Redactor,
    *,
    db: str,
    hooks: HookConfig,
    pulls: PullConfig,
    environ: Mapping[str, str],
) -> Redactor:
    for secret in hooks.secrets.values():
        redactor.add(secret)
    for token in pulls.tokens.values():
        if token:
            redactor.add_value(token)
    urls = list(pulls.urls.values())
    llm = load_llm_config(environ)
    if llm is not None:
        urls.append(llm.base_url)
        if llm.api_key:
            redactor.add_value(llm.api_key)
    for url in urls:  # a password in a source's URL (https://user:pass@host/)
        with contextlib.suppress(ValueError):
            parts = urlsplit(url)
            if parts.password:
                redactor.add_value(parts.password)
                redactor.add_value(unquote(parts.password))
                # httpx sends it as Basic auth, which a source or proxy may echo back.
                basic = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
                redactor.add_value(base64.b64encode(basic.encode()).decode())
    for password in store_passwords(db):
        redactor.add_value(password)
    return redactor


def store_error(url: str, exc: BaseException) -> str:
    """A driver's error about the store `url`, without the URL's passwords."""
    redactor = Redactor()
    for password in store_passwords(url):
        redactor.add_value(password)
    return redactor.scrub(str(exc))
