"""ASHA under populations, simulated: the real decision rule (rlhp.asha._rule), no training.

A search of n trials on S slots with the `ppo_cartpole` preset's schedule: a log point every
3000 frames, rungs at log points 1, 2, 4, 8 (3k-24k frames), a trial complete at 10 (30k),
reduction factor 2. Trial j's quality is a_j = z_j + trend * ended / n, where `ended` is how
many trials had ended when the sampler asked for j (the sampler improves with results: in two
64-trial `ppo_cartpole` searches of one process per trial the values at each rung correlate
0.56-0.74 with the trial number); its value at rung r is sqrt(rho) a_j + sqrt(1 - rho) e_jr.
Schedules:

- staggered: one process per trial, S at a time, each trial at its own speed (0.8-1.2);
- batched: S population jobs of P members in lockstep (one log point per job step), asked for
  P trials at once and retired after them; a slot starts its next job once its retired job
  has at most P/2 members training (as rlhp.sweep._batched does). The members that reach
  rungs at one step report one after the other (slot order), as the coordinator judges them:
  each against the values recorded before it, batch mates included;
- replay: the batched search's own trials (the same values) staggered.

    python tests/asha/_simulate.py [--seeds 200]
"""

import argparse
import heapq
from dataclasses import dataclass, field

import numpy as np

from rlhp.asha._rule import cutoff, decide

RUNGS = {1: 0, 2: 1, 4: 2, 8: 3}  # log point -> rung index
END = 10
RF = 2


def judge(rungs: list[list[float]], arrivals: list[tuple[int, float]]) -> list[bool]:
    """Decisions for (rung, value) reports arriving at one step, recorded in their order."""
    out = []
    for r, value in arrivals:
        out.append(decide(value, cutoff(rungs[r], RF)))
        rungs[r].append(value)
    return out


@dataclass
class Search:
    """One simulated search: its trials' values (drawn when asked) and what ASHA decided."""

    n: int
    seed: int
    trend: float
    rho: float = 0.7
    given: list[np.ndarray] | None = None  # replay: the values of another search's trials
    values: list[np.ndarray] = field(default_factory=list)
    ended: int = 0
    rungs: list[list[float]] = field(default_factory=lambda: [[] for _ in RUNGS])
    passes: np.ndarray = field(default_factory=lambda: np.zeros(len(RUNGS), int))
    complete: int = 0

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.z, self.e = rng.normal(size=self.n), rng.normal(size=(self.n, len(RUNGS)))
        self.speed = rng.uniform(0.8, 1.2, size=self.n)

    def ask(self) -> int | None:
        j = len(self.values)
        if j == self.n:
            return None
        a = self.z[j] + self.trend * self.ended / self.n
        fresh = np.sqrt(self.rho) * a + np.sqrt(1 - self.rho) * self.e[j]
        self.values.append(fresh if self.given is None else self.given[j])
        return j

    def report(self, arrivals: list[tuple[int, int]]) -> list[bool]:
        """(trial, log point) reports of one step: True to go on; ends and counts trials."""
        at_rung = [(j, RUNGS[lp]) for j, lp in arrivals if lp in RUNGS]
        go = judge(self.rungs, [(r, self.values[j][r]) for j, r in at_rung])
        decided = {j: ok for (j, _), ok in zip(at_rung, go, strict=True)}
        for (_, r), ok in zip(at_rung, go, strict=True):
            self.passes[r] += ok
        out = []
        for j, lp in arrivals:
            on = decided.get(j, True) and lp < END
            self.complete += lp == END
            self.ended += not on
            out.append(on)
        return out


def staggered(search: Search, slots: int) -> Search:
    events = []

    def start(t: float) -> None:
        if (j := search.ask()) is not None:
            heapq.heappush(events, (t + search.speed[j], j, 1))

    for _ in range(slots):
        start(0.0)
    while events:
        t, j, lp = heapq.heappop(events)
        if search.report([(j, lp)])[0]:
            heapq.heappush(events, (t + search.speed[j], j, lp + 1))
        else:
            start(t)
    return search


@dataclass
class Job:
    slot: int
    t: float
    members: list[list[int]]  # [trial, log point]


def batched(search: Search, slots: int, population: int) -> Search:
    jobs: list[Job] = []

    def start(slot: int, t: float) -> None:
        trials = [j for _ in range(population) if (j := search.ask()) is not None]
        if trials:
            jobs.append(Job(slot, t, [[j, 0] for j in trials]))

    for slot in range(slots):
        start(slot, 0.0)
    while jobs:
        job = min(jobs, key=lambda job: job.t)
        job.t += 1.0 + 0.1 * job.slot  # the slots' processes run at slightly different speeds
        for member in job.members:
            member[1] += 1
        go = search.report([(j, lp) for j, lp in job.members])
        job.members = [m for m, on in zip(job.members, go, strict=True) if on]
        if not job.members:
            jobs.remove(job)
        mine = sum(len(j.members) for j in jobs if j.slot == job.slot)
        if mine <= population // 2:
            start(job.slot, job.t)
    return search


def mean_of(runs: list[Search]) -> tuple[np.ndarray, float]:
    return np.mean([s.passes for s in runs], axis=0), float(np.mean([s.complete for s in runs]))


def compare(
    seeds: range, n: int = 64, slots: int = 2, population: int = 16, trend: float = 0.0
) -> dict[str, tuple[np.ndarray, float]]:
    """Mean passes per rung and completes of each schedule over `seeds`."""
    rows: dict[str, list[Search]] = {}
    for seed in seeds:
        rows.setdefault("staggered", []).append(staggered(Search(n, seed, trend), slots))
        run = batched(Search(n, seed, trend), slots, population)
        rows.setdefault("batched", []).append(run)
        replay = Search(n, seed, trend, given=run.values)
        rows.setdefault("replay staggered", []).append(staggered(replay, slots))
    return {name: mean_of(runs) for name, runs in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--trends", type=float, nargs="+", default=[0.0, 2.0, 4.0])
    args = parser.parse_args()
    print("| trend | schedule | passes at 3k / 6k / 12k / 24k | complete |")
    print("|---|---|---|---|")
    for trend in args.trends:
        table = compare(range(args.seeds), args.trials, 2, args.population, trend)
        for name, (passes, complete) in table.items():
            rungs = " / ".join(f"{p:.1f}" for p in passes)
            print(f"| {trend:g} | {name} | {rungs} | {complete:.1f} of {args.trials} |")


if __name__ == "__main__":
    main()
