"""redact(): every form of a PostgreSQL URL or conninfo string loses its secrets."""

from __future__ import annotations

import pytest

from engine.store.postgres_url import passwords, redact

PW = "Pl4nted-pw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://app:{PW}@db:5432/ip", "postgresql://app:***@db:5432/ip"),
        (f"postgres://app:{PW}@db/ip?sslmode=require", "postgres://app:***@db/ip?sslmode=require"),
        (f"postgresql://app@db/ip?password={PW}", "postgresql://app@db/ip?password=***"),
        (
            f"postgresql://db/ip?sslmode=verify-full&sslpassword={PW}&password={PW}x&schema=s",
            "postgresql://db/ip?sslmode=verify-full&sslpassword=***&password=***&schema=s",
        ),
        (f"postgresql://db/ip?pass%77ord={PW}", "postgresql://db/ip?pass%77ord=***"),
        (f"postgresql://db/ip?PASSWORD={PW}", "postgresql://db/ip?PASSWORD=***"),
        ("postgresql://app:p%40ss%3Aw0rd@db/ip", "postgresql://app:***@db/ip"),
        (f"postgresql://app:{PW}@x@db/ip", "postgresql://app:***@db/ip"),  # unencoded @
        (f"postgresql://app:{PW}?x@db/ip", "postgresql://app:***@db/ip"),  # unencoded ?
        (f"host=db user=app password={PW} dbname=ip", "host=db user=app password=*** dbname=ip"),
        (f"host=db password = '{PW} \\' x' dbname=ip", "host=db password = *** dbname=ip"),
        (f"host=db sslpassword={PW}", "host=db sslpassword=***"),
        (f"HOST=db PASSWORD={PW}", "HOST=db PASSWORD=***"),
        ("postgresql://app@db/ip?sslmode=require", "postgresql://app@db/ip?sslmode=require"),
    ],
)
def test_redact_masks_every_form(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert PW not in redact(url)


@pytest.mark.parametrize(
    ("url", "found"),
    [
        (f"postgresql://app:{PW}@db/ip", [PW]),
        ("postgresql://app:p%40ss@db/ip", ["p%40ss", "p@ss"]),
        (f"postgresql://db/ip?password={PW}&sslpassword=other-pw", [PW, "other-pw"]),
        (f"host=db password='{PW}'", [PW]),
        ("postgresql://app@db/ip", []),
    ],
)
def test_passwords_finds_what_libpq_would_send(url: str, found: list[str]) -> None:
    assert passwords(url) == found
