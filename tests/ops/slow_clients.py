"""Idle and slowloris clients against a server, in their own process (so they do not share
the test's GIL). Each connection that the server closes is opened again at once, so the
attack keeps its size for the whole run.

    python -m tests.ops.slow_clients --port P --idle 2000 --slow 500 --seconds 30

- idle: connect and send nothing;
- slow: send a request line and then one header byte every `--interval` seconds, never
  finishing the head.

Prints one JSON line when done: connections made, closed by the server, open at the end,
the most open at once, and the status lines of whatever the server answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections import Counter

stats: Counter[str] = Counter()
answers: Counter[str] = Counter()
open_now = 0
most_open = 0


async def _client(port: int, kind: str, interval: float, until: float) -> None:
    global open_now, most_open
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats[f"{kind}_connect_errors"] += 1
            await asyncio.sleep(0.2)
            continue
        stats[f"{kind}_connects"] += 1
        open_now += 1
        most_open = max(most_open, open_now)
        try:
            if kind == "slow":
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            while time.monotonic() < until:
                if kind == "slow":
                    writer.write(b"a")
                    await writer.drain()
                try:
                    wait = min(interval, until - time.monotonic())
                    data = await asyncio.wait_for(reader.read(4096), max(wait, 0.01))
                except TimeoutError:
                    continue
                if data:
                    answers[data.split(b"\r\n", 1)[0].decode("latin-1")] += 1
                stats[f"{kind}_closed_by_server"] += 1
                break
        except OSError:
            stats[f"{kind}_closed_by_server"] += 1
        finally:
            open_now -= 1
            writer.close()


async def main(args: argparse.Namespace) -> None:
    until = time.monotonic() + args.seconds
    # idle clients wait for the server to close (or the end) in one read: cheap, so the
    # attack costs the machine (shared with the server) little CPU
    tasks = [_client(args.port, "idle", args.seconds, until) for _ in range(args.idle)]
    tasks += [_client(args.port, "slow", args.interval, until) for _ in range(args.slow)]
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=500)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(args))
    print(
        json.dumps({**stats, "open_at_end": open_now, "most_open": most_open, "answers": answers})
    )
