"""The scenario: background context, injected faults with their ground truth, flapping
noise. Pure data from a seeded `random.Random`; times are seconds relative to an anchor
that play.py fixes when it plays them (a fault's onset, or the start of the run)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.quality.fleet import Fleet

HISTORY_S = 2 * 3600  # background context covers the two hours before the run
DEPLOYS_PER_SERVICE_PER_DAY = 3.0
BASELINE_ERRORS_PER_HOUR = 6.0  # per service: ~1 in any 10 minutes, under logs.error_spike's 5
TRACE_EVERY_S = 180  # per service: ~5 in any 15 minutes, healthy latency
KINDS = ("bad_deploy", "upstream_outage", "oom_crashloop", "latency_regression", "leader_thrash")
RECURRING = ("bad_deploy", "oom_crashloop", "latency_regression", "leader_thrash")
AUTHORS = ("alice", "bob", "chen", "dana", "emre", "fatima", "goran", "hana")
NOISE_ALERTS = ("DiskSpaceLow", "CertExpiringSoon", "NodeClockSkew", "KubeJobFailed", "HighGCPause")


@dataclass
class AlertSpec:
    key: str  # unique in the scenario
    group: str  # ground truth: the fault id, or noise:<service>:<alertname>
    labels: dict[str, str]
    summary: str
    episodes: list[tuple[float, float | None]]  # (start, end) offsets; end None: still firing


@dataclass
class Fault:
    id: str
    kind: str
    phase: str  # "past" (played and resolved in the past) or "live"
    root_service: str
    services: list[str]
    culprit: dict[str, Any] | None = None  # the deploy record that caused it
    distractors: list[dict[str, Any]] = field(default_factory=list)
    recurrence_of: str | None = None
    alerts: list[AlertSpec] = field(default_factory=list)
    deploys: list[dict[str, Any]] = field(default_factory=list)  # offsets from the onset
    logs: list[dict[str, Any]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Scenario:
    seed: int
    fleet: Fleet
    background: dict[str, list[dict[str, Any]]]  # offsets from the start (negative)
    faults: list[Fault]
    noise: list[AlertSpec]

    def truth(self) -> dict[str, Any]:
        """The ground truth, JSON-ready."""
        return {
            "seed": self.seed,
            "services": len(self.fleet.services),
            "dependencies": {s: u for s, u in self.fleet.upstream.items() if u},
            "faults": [
                {
                    "id": f.id,
                    "kind": f.kind,
                    "phase": f.phase,
                    "root_service": f.root_service,
                    "services": f.services,
                    "culprit": f.culprit,
                    "distractors": f.distractors,
                    "recurrence_of": f.recurrence_of,
                    "alerts": [asdict(a) for a in f.alerts],
                }
                for f in self.faults
            ],
            "noise": [asdict(a) for a in self.noise],
            "background": {k: len(v) for k, v in self.background.items()},
        }


class _Gen:
    def __init__(self, fleet: Fleet, rng: random.Random, distractor_rate: float) -> None:
        self.fleet, self.rng, self.distractor_rate = fleet, rng, distractor_rate
        self.used: set[str] = set()
        self.n = 0

    def commit(self) -> str:
        return f"{self.rng.getrandbits(28):07x}"

    def deploy(self, svc: str, at: float, role: str) -> dict[str, Any]:
        return {
            "service": svc,
            "commit": self.commit(),
            "author": self.rng.choice(AUTHORS),
            "at": at,
            "role": role,
        }

    def pick(self, candidates: list[str]) -> str | None:
        free = [s for s in candidates if s not in self.used]
        return self.rng.choice(free) if free else None

    def alert(
        self, fault: Fault, svc: str, name: str, sev: str, summary: str, **extra: str
    ) -> AlertSpec:
        labels = {"alertname": name, "service": svc, "team": self.fleet.team[svc], "severity": sev}
        labels.update(extra)
        spec = AlertSpec(f"{fault.id}/{len(fault.alerts)}", fault.id, labels, summary, [])
        fault.alerts.append(spec)
        return spec

    def logs(
        self, svc: str, start: float, end: float, n: int, pattern: str, level: str = "ERROR"
    ) -> list[dict[str, Any]]:
        return [
            {
                "service": svc,
                "level": level,
                "message": pattern.replace("<n>", str(self.rng.randint(1000, 99999))),
                "at": self.rng.uniform(start, end),
            }
            for _ in range(n)
        ]

    def traces(
        self, svc: str, start: float, end: float, n: int, lo: float, hi: float
    ) -> list[dict[str, Any]]:
        return [
            {
                "service": svc,
                "trace_id": f"{self.rng.getrandbits(64):016x}",
                "duration_ms": round(self.rng.uniform(lo, hi), 1),
                "at": self.rng.uniform(start, end),
            }
            for _ in range(n)
        ]

    # --- the fault kinds: each fills `f` and returns False when no service fits ---------

    def bad_deploy(self, f: Fault, svc: str) -> None:
        r = self.rng
        culprit_at = -r.uniform(240, 540)
        f.culprit = self.deploy(svc, culprit_at, "culprit")
        f.deploys.append(f.culprit)
        count = int(self.distractor_rate) + (r.random() < self.distractor_rate % 1)
        for _ in range(count):
            neighbours = self.fleet.neighbours(svc)
            if neighbours and r.random() < 0.4:
                d = self.deploy(r.choice(neighbours), -r.uniform(30, 900), "distractor")
            elif r.random() < 0.5:  # after the culprit: errors were already rising
                d = self.deploy(svc, r.uniform(culprit_at + 60, -30), "distractor")
            else:
                d = self.deploy(svc, culprit_at - r.uniform(180, 1200), "distractor")
            f.distractors.append(d)
            f.deploys.append(d)
        f.logs += self.logs(
            svc,
            culprit_at + 30,
            0,
            r.randint(40, 90),
            "NullPointerException in OrderHandler.apply order=<n>",
        )
        f.traces += self.traces(svc, culprit_at + 30, 0, 20, 1200, 4000)
        self.alert(
            f, svc, "HighErrorRate", "critical", f"5xx rate above 5% on {svc}"
        ).episodes.append((0, None))
        if r.random() < 0.5:
            a = self.alert(f, svc, "HighLatencyP99", "warning", f"p99 latency above 1s on {svc}")
            a.episodes.append((r.uniform(30, 120), None))

    def upstream_outage(self, f: Fault, svc: str) -> None:
        r = self.rng
        deps = [d for d in self.fleet.dependents(svc, 2) if d not in self.used]
        deps = sorted(r.sample(deps, min(len(deps), r.randint(2, 10))))
        f.services = [svc, *deps]
        self.used.update(deps)
        f.logs += self.logs(
            svc,
            -90,
            90,
            r.randint(20, 40),
            "connection refused: accept queue full on port <n>",
            "FATAL",
        )
        self.alert(f, svc, "ServiceDown", "critical", f"{svc} is down").episodes.append((0, None))
        for d in deps:
            start = r.uniform(-90, 90)  # dependents often alert before their upstream
            f.logs += self.logs(
                d,
                start - 60,
                start + 30,
                r.randint(10, 30),
                f"upstream {svc} unavailable: connection reset after <n>ms",
            )
            self.alert(
                f, d, "HighErrorRate", "critical", f"5xx rate above 5% on {d}"
            ).episodes.append((start, None))

    def oom_crashloop(self, f: Fault, svc: str) -> None:
        r = self.rng
        f.logs += self.logs(
            svc,
            -600,
            40,
            r.randint(5, 15),
            "java.lang.OutOfMemoryError: Java heap space (pid <n>)",
            "FATAL",
        )
        self.alert(
            f, svc, "ContainerOOMKilled", "warning", f"{svc} container OOM-killed"
        ).episodes.append((-30, None))
        for i in range(r.randint(2, 3)):
            a = self.alert(
                f,
                svc,
                "KubePodCrashLooping",
                "critical",
                f"{svc} pod crash looping",
                pod=f"{svc}-7d9f{i}",
            )
            a.episodes.append((i * 20.0, None))

    def latency_regression(self, f: Fault, svc: str) -> None:
        f.traces += self.traces(svc, -900, 0, 30, 1500, 6000)
        self.alert(
            f, svc, "HighLatencyP99", "warning", f"p99 latency above 1s on {svc}"
        ).episodes.append((0, None))

    def leader_thrash(self, f: Fault, svc: str) -> None:
        r = self.rng
        f.logs += self.logs(
            svc,
            -300,
            60,
            r.randint(20, 40),
            "lost leadership, starting election for term <n>",
            "WARN",
        )
        f.logs += self.logs(
            svc, -300, 60, r.randint(5, 12), "leader election timed out after <n>ms"
        )
        a = self.alert(
            f, svc, "LeaderElectionThrash", "critical", f"{svc} leader changed 5 times in 10m"
        )
        a.episodes += [(-100, -80), (-50, -30), (0, None)]

    def fault(self, kind: str, phase: str) -> Fault | None:
        self.n += 1
        f = Fault(f"f{self.n:03d}-{kind}", kind, phase, "", [])
        if kind == "upstream_outage":
            cands = [s for s in self.fleet.services if len(self.fleet.dependents(s, 2)) >= 2]
        elif kind == "leader_thrash":
            cands = [s for s in self.fleet.services if self.fleet.layer[s] <= 1]
        else:
            cands = [s for s in self.fleet.services if self.fleet.layer[s] >= 1]
        svc = self.pick(cands)
        if svc is None:
            return None
        self.used.add(svc)
        f.root_service, f.services = svc, [svc]
        getattr(self, kind)(f, svc)
        return f

    def recurrence(self, original: Fault) -> Fault:
        self.n += 1
        f = Fault(
            f"f{self.n:03d}-recurrence",
            original.kind,
            "live",
            original.root_service,
            [original.root_service],
        )
        f.recurrence_of = original.id
        getattr(self, original.kind)(f, original.root_service)
        return f


def background(fleet: Fleet, rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    deploys, logs, traces = [], [], []
    patterns = (
        "timeout calling <svc> after <n>ms",
        "retrying request id=<n>",
        "cache miss storm on key <n>",
    )
    for svc in fleet.services:
        for _ in range(_poisson(rng, DEPLOYS_PER_SERVICE_PER_DAY * HISTORY_S / 86400)):
            deploys.append(
                {
                    "service": svc,
                    "commit": f"{rng.getrandbits(28):07x}",
                    "author": rng.choice(AUTHORS),
                    "at": -rng.uniform(0, HISTORY_S),
                    "role": "routine",
                }
            )
        ups = fleet.upstream[svc] or ["disk"]
        for _ in range(_poisson(rng, BASELINE_ERRORS_PER_HOUR * HISTORY_S / 3600)):
            msg = (
                rng.choice(patterns)
                .replace("<svc>", rng.choice(ups))
                .replace("<n>", str(rng.randint(10, 9999)))
            )
            logs.append(
                {"service": svc, "level": "ERROR", "message": msg, "at": -rng.uniform(0, HISTORY_S)}
            )
        for i in range(HISTORY_S // TRACE_EVERY_S):
            traces.append(
                {
                    "service": svc,
                    "trace_id": f"{rng.getrandbits(64):016x}",
                    "duration_ms": round(rng.lognormvariate(4.4, 0.5), 1),
                    "at": -(i * TRACE_EVERY_S + rng.uniform(0, TRACE_EVERY_S)),
                }
            )
    return {"deploys": deploys, "logs": logs, "traces": traces}


def _poisson(rng: random.Random, mean: float) -> int:
    n, t = 0, rng.expovariate(1.0)
    while t < mean:
        n += 1
        t += rng.expovariate(1.0)
    return n


def generate(fleet: Fleet, seed: int, faults_per_kind: int, distractor_rate: float) -> Scenario:
    """Per kind `faults_per_kind` live faults, plus one past fault per recurring kind that
    recurs live (its original resolved an hour and more before the run)."""
    rng = random.Random(seed ^ 0x5EED)
    gen = _Gen(fleet, rng, distractor_rate)
    faults: list[Fault] = []
    originals = [gen.fault(kind, "past") for kind in RECURRING]
    faults += [f for f in originals if f]
    live = [f for f in (gen.fault(k, "live") for k in KINDS for _ in range(faults_per_kind)) if f]
    rng.shuffle(live)
    faults += live
    faults += [gen.recurrence(o) for o in originals if o]
    quiet = [s for s in fleet.services if s not in gen.used]
    noise = []
    for i in range(min(len(quiet), max(3, len(fleet.services) // 15))):
        svc = quiet[rng.randrange(len(quiet))]
        name = NOISE_ALERTS[i % len(NOISE_ALERTS)]
        labels = {"alertname": name, "service": svc, "team": fleet.team[svc], "severity": "warning"}
        spec = AlertSpec(f"noise/{i}", f"noise:{svc}:{name}", labels, f"{name} on {svc}", [])
        spec.episodes = [(0.0, 60.0)] * rng.randint(2, 3)  # play.py spreads them over the run
        noise.append(spec)
    return Scenario(seed, fleet, background(fleet, rng), faults, noise)
