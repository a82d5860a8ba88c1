"""The pruner's pacing (engine.store.retention.paced): chunks sized to take a few
milliseconds, a pause as long as each chunk between them, and a stop on a short chunk."""

from __future__ import annotations

import time

from engine.store import retention


def test_chunks_are_sized_toward_the_target_and_separated_by_pauses() -> None:
    backlog = 100_000
    asked: list[int] = []
    pauses: list[float] = []
    per_row = 0.00002  # 20 us a row: the target of 4 ms is 200 rows

    def step(limit: int) -> int:
        nonlocal backlog
        asked.append(limit)
        n = min(limit, backlog)
        backlog -= n
        time.sleep(n * per_row)
        return n

    total = retention.paced(step, first=2_000, sleep=pauses.append)

    assert total == 100_000 and backlog == 0
    assert asked[0] == 2_000
    # The big first chunk took ~40 ms; the next ones shrink toward ~200 rows (sleep() only
    # ever takes longer than asked, so the measured per-row time is an upper bound).
    assert asked[3] < 600 and min(asked[:-1]) >= retention.MIN_CHUNK
    assert len(pauses) == len(asked) - 1  # a pause after every full chunk, none after the last
    assert pauses[0] >= 2_000 * per_row  # as long as the chunk took


def test_a_short_first_chunk_ends_it_without_a_pause() -> None:
    pauses: list[float] = []
    assert retention.paced(lambda limit: 3, sleep=pauses.append) == 3
    assert pauses == []
