"""`python -m bench quality [--seed N] [--services N] [--faults N] [--distractor-rate R]
[--out DIR]`: generate, play against a live server, score, report."""

from __future__ import annotations

import argparse
import json
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.quality import fleet, play, report, scenario, score
from engine.paths import rules_dir
from engine.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "QUALITY.md"


def log(msg: str) -> None:
    sys.stderr.write(f"[quality {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench quality", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--seed", type=int, default=1, help="the scenario's seed (default 1)")
    p.add_argument("--services", type=int, default=300, help="fleet size, 30 to 300 (default 300)")
    p.add_argument("--faults", type=int, default=4, help="live faults per fault kind (default 4)")
    p.add_argument(
        "--distractor-rate",
        type=float,
        default=1.0,
        help="innocent deploys per bad deploy (default 1.0; 1.5 = one, and a second half the time)",
    )
    p.add_argument(
        "--live-window",
        type=float,
        default=play.LIVE_WINDOW_S,
        help=f"seconds over which the live faults start (default {play.LIVE_WINDOW_S:.0f}); "
        "longer: fewer faults open at once, a longer run",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="shrink the live phase's times by this factor (the smoke test: 0.02; figures: 1)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help=f"where quality.json and the scenario go (default {RESULTS.relative_to(ROOT)})",
    )
    p.add_argument(
        "--docs", type=Path, help=f"the page to update (default {DOCS.relative_to(ROOT)})"
    )
    p.add_argument("--no-docs", action="store_true", help="do not touch the docs page")
    args = p.parse_args(argv)
    if not 30 <= args.services <= 300:
        p.error("--services must be 30 to 300")
    if args.faults < 1 or args.distractor_rate < 0:
        p.error("--faults must be at least 1 and --distractor-rate not negative")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    out: Path = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    the_fleet = fleet.build_fleet(args.services, random.Random(args.seed))
    scen = scenario.generate(the_fleet, args.seed, args.faults, args.distractor_rate)
    work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    try:
        # The shipped rules as they are, with the fleet's graph as their dependencies table.
        rules = work / "rules"
        shutil.copytree(rules_dir(), rules)
        fleet.write_table(the_fleet, rules)
        shutil.copy(rules / "tables" / "dependencies.yaml", out / "quality-dependencies.yaml")
        srv = ServerProcess(work, "--quiet", "--rules", str(rules), startup_timeout=120)
        with srv, srv.client(timeout=30.0) as client:
            played = play.play(scen, client, log, args.time_scale, args.live_window)
            result = score.score(scen, played, client)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.update(
        {
            "schema": 1,
            "seed": args.seed,
            "services": args.services,
            "faults": len(scen.faults),
            "faults_per_kind": args.faults,
            "distractor_rate": args.distractor_rate,
            "command": shlex.join(["python", "-m", "bench", "quality", *argv]),
            "time_scale": args.time_scale,
            "live_window_s": args.live_window,
            **{
                k: played[k]
                for k in ("play_seconds", "live_seconds", "max_lag_s", "max_faults_open")
            },
            "duration_seconds": round(time.monotonic() - started, 1),
        }
    )
    truth = scen.truth()
    truth["sent"] = played["sent"]
    (out / "quality-scenario.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n")
    report.write_json(out / "quality.json", result)
    table = report.markdown(result)
    if not args.no_docs:
        report.write_docs(args.docs or DOCS, table)
    sys.stdout.write(table + "\n")
    log(f"results: {out / 'quality.json'}, ground truth: {out / 'quality-scenario.json'}")
    return 0
