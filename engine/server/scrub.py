"""Which secrets the running service holds, so that no log line or stored error quotes one.

`learn_secrets` teaches the delivery redactor (which already knows the sinks' secrets)
every other secret the process read: the deploy webhooks' secrets, the pull sources'
bearer tokens, the LLM API key and the store URL's passwords. `serve` then scrubs every
log line with it (engine.server.logs.scrub_secrets). API tokens are not among them: only
their SHA-256 digests are kept (engine.server.auth), and no request header or body is
logged.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.adapters.deploy_config import HookConfig
from engine.delivery.secrets import Redactor, url_credentials
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
    for url in pulls.urls.values():  # a password in a source's URL (https://user:pass@host/)
        for value in url_credentials(url):
            redactor.add_value(value)
    llm = load_llm_config(environ)
    for value in llm.secret_values() if llm is not None else ():
        redactor.add_value(value)
    for password in store_passwords(db):
        redactor.add_value(password)
    return redactor


def store_error(url: str, exc: BaseException) -> str:
    """A driver's error about the store `url`, without the URL's passwords."""
    redactor = Redactor()
    for password in store_passwords(url):
        redactor.add_value(password)
    return redactor.scrub(str(exc))
