"""Populations vs single runs: total training frames/s of K members trained as one population
against the same K configurations trained alone, one after another; and learning side by side.

Every measurement is a fresh subprocess pinned to one core (`taskset -c 0`) with 1 torch thread,
so extra processes or threads cannot stand in for batching. Only training is timed
(`Population.run()`; env and model construction are excluded for both). The K configurations
differ in their per-member hyperparameters (VARIED: PPO's lr, gamma, lam, clip_eps,
entropy_coef; DQN's lr, gamma, epsilon schedule, tau; SAC's lr, gamma, tau, alpha; drawn from a
fixed seed around the tuned config); "alone" trains each as a population of one. With `--baseline
SRC` (a checkout of rlhp before populations, e.g. `git worktree add /tmp/old 281eb0a`) a K = 1
row also times that version's single `Session.run()` on the same config, to show whether the
single run got slower.

    python benchmarks/population.py --env cartpole --ks 1 4 16 64 --frames 50000 --reps 3
    python benchmarks/population.py --algo dqn --env cartpole --ks 16 --frames 20000 --reps 3
    python benchmarks/population.py --algo sac --env pendulum --ks 8 --frames 5000 --reps 3
    python benchmarks/population.py --env lunar --ks 1 4 16 --frames 20000
    python benchmarks/population.py --env breakout --ks 1 2 4 --frames 2048 --reps 2
    python benchmarks/population.py --sessions 8 --frames 50000   # max_session=8 vs sequential

`--alone N` times at most N of the K configurations alone per repetition (the sequential rate
is total frames over total time, so a sample of the runs estimates it; the K = 16 headline runs
all 16).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import take_machine

ROOT = Path(__file__).resolve().parents[1]


# per algorithm: its preset env and how each member draws its per-member hyperparameters
VARIED = {
    "ppo": lambda rng: {
        "algo.lr": f"{10 ** rng.uniform(-3.7, -2.7):.6g}",
        "algo.gamma": f"{rng.uniform(0.95, 0.995):.4f}",
        "algo.lam": f"{rng.uniform(0.8, 0.98):.3f}",
        "algo.clip_eps": f"{rng.uniform(0.1, 0.3):.3f}",
        "algo.entropy_coef": str(rng.choice([0.0, 0.001, 0.01])),
    },
    "dqn": lambda rng: {
        "algo.lr": f"{10 ** rng.uniform(-3.5, -2.5):.6g}",
        "algo.gamma": f"{rng.uniform(0.95, 0.995):.4f}",
        "algo.explore_var_spec.end_step": str(int(rng.uniform(4000, 12000))),
        "algo.tau": f"{rng.uniform(0.5, 1.0):.3f}",
    },
    "sac": lambda rng: {
        "algo.lr": f"{10 ** rng.uniform(-3.5, -2.5):.6g}",
        "algo.gamma": f"{rng.uniform(0.95, 0.995):.4f}",
        "algo.tau": f"{rng.uniform(0.002, 0.02):.4f}",
        "algo.alpha": f"{10 ** rng.uniform(-1.5, 0):.4f}",
    },
}


def configs(
    algo: str, env: str, k: int, frames: int, extra: list[str], seed: int = 0
) -> list[list[str]]:
    """K override lists: the tuned config (and `extra`) with its per-member hyperparameters
    varied."""
    rng = np.random.default_rng(1234)
    out = []
    for i in range(k):
        varied = VARIED[algo](rng)
        out.append(
            [
                f"algo={algo}",
                f"env={env}",
                f"env.max_frame={frames}",
                f"log_frequency={max(frames // 5, 1)}",
                f"seed={seed + i}",
                *(f"{key}={value}" for key, value in varied.items()),
                *extra,
            ]
        )
    return out


def compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return compose("config", overrides=overrides)


def work(mode: str, overrides: list[list[str]], baseline: str | None) -> dict:
    """In the worker process: train, time training only; frames, seconds, final MA per member."""
    import torch

    torch.set_num_threads(1)
    cfgs = [compose(o) for o in overrides]
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "baseline":  # the single Session of rlhp before populations
            from rlhp.loop import Session

            session = Session(cfgs[0], Path(tmp), 0, torch.device("cpu"))
            start = time.perf_counter()
            summary = session.run()
            return {
                "frames": session.frame,
                "wall_s": time.perf_counter() - start,
                "final": [summary["final"]],
            }
        from rlhp.population import Member, Population

        members = [Member(c, Path(tmp) / str(i)) for i, c in enumerate(cfgs)]
        if mode == "sessions":  # one config, max_session members
            members = [Member(cfgs[0], Path(tmp), s) for s in range(cfgs[0].max_session)]
        groups = [members] if mode in ("population", "sessions") else [[m] for m in members]
        wall = 0.0
        for group in groups:
            population = Population(group, torch.device("cpu"))
            start = time.perf_counter()
            population.run()
            wall += time.perf_counter() - start
        import resource

        return {
            "frames": sum(m.frame for m in members),
            "wall_s": wall,
            "final": [m.summary()["final"] for m in members],
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }


def worker(mode: str, overrides: list[list[str]], baseline: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if baseline:
        env["PYTHONPATH"] = str(Path(baseline) / "src")
    cmd = ["taskset", "-c", "0", sys.executable, __file__, "--worker", mode]
    out = subprocess.run(
        cmd, input=json.dumps(overrides), env=env, check=True, capture_output=True, text=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["fps"] = result["frames"] / result["wall_s"]
    return result


def scaling(args) -> None:
    print(f"## {args.algo.upper()} populations on {args.env} (`benchmarks/population.py`)\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    take_machine("pinned to core 0, 1 torch thread")
    print(f"- {args.frames:,} frames per member, {args.reps} repetitions (alternating order)\n")
    print(
        "| K | population frames/s | alone frames/s (sequential) | ratio | reps (ratios) | "
        "peak RSS population / alone (MB) |"
    )
    print("|---:|---:|---:|---:|---|---|")
    learning = None
    for k in args.ks:
        cfgs = configs(args.algo, args.env, k, args.frames, args.set)
        n_alone = min(k, args.alone) if k != 16 else k
        pop, alone, base = [], [], []
        for rep in range(args.reps):
            runs = [("population", cfgs), ("alone", cfgs[:n_alone])]
            if k == 1 and args.baseline:
                runs.append(("baseline", cfgs))
            for mode, c in runs if rep % 2 == 0 else runs[::-1]:
                r = worker(mode, c, args.baseline if mode == "baseline" else None)
                {"population": pop, "alone": alone, "baseline": base}[mode].append(r)
        ratios = [p["fps"] / a["fps"] for p, a in zip(pop, alone, strict=True)]
        med_p = statistics.median(r["fps"] for r in pop)
        med_a = statistics.median(r["fps"] for r in alone)
        print(
            f"| {k} | {med_p:,.0f} | {med_a:,.0f}"
            f"{'' if n_alone == k else f' ({n_alone} of {k} timed)'} | "
            f"**{statistics.median(ratios):.2f}x** | {', '.join(f'{x:.2f}' for x in ratios)} | "
            f"{max(r['rss_mb'] for r in pop):,.0f} / {max(r['rss_mb'] for r in alone):,.0f} |",
            flush=True,
        )
        if base:
            pairs = [p["fps"] / b["fps"] for p, b in zip(pop, base, strict=True)]
            print(
                f"| 1 (before populations: `Session.run()`) | | "
                f"{statistics.median(b['fps'] for b in base):,.0f} | "
                f"**{statistics.median(pairs):.2f}x** (K = 1 / before) | "
                f"{', '.join(f'{x:.2f}' for x in pairs)} |",
                flush=True,
            )
        if k == 16:
            learning = (cfgs, pop[0]["final"], alone[0]["final"])
    if learning:
        cfgs, pop_final, alone_final = learning
        print("\nLearning, K = 16 (final total_reward_ma, repetition 0):\n")
        varied = cfgs[0][5 : 5 + len(VARIED[args.algo](np.random.default_rng()))]
        names = [o.split("=")[0].split(".")[-1] for o in varied]
        print(f"| member | {' | '.join(names)} | population | alone |")
        print(f"|---:|{'---:|' * len(names)}---:|---:|")
        for i, (c, p, a) in enumerate(zip(cfgs, pop_final, alone_final, strict=True)):
            hp = [o.split("=")[1] for o in c[5 : 5 + len(names)]]
            print(f"| {i} | {' | '.join(hp)} | {p:.1f} | {a:.1f} |")
        print(
            f"\nMean over members: population {np.mean(pop_final):.1f}, "
            f"alone {np.mean(alone_final):.1f}."
        )


def sessions(args) -> None:
    print("## max_session=8: one population vs sessions one after another\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    take_machine("pinned to core 0, 1 torch thread")
    print()
    cfg = [f"env={args.env}", f"env.max_frame={args.frames}", f"max_session={args.sessions}"]
    walls = {"sessions": [], "alone": []}
    for rep in range(args.reps):
        runs = [("sessions", [cfg])]
        runs.append(("alone", [[*cfg[:2], f"seed={s}"] for s in range(args.sessions)]))
        for mode, c in runs if rep % 2 == 0 else runs[::-1]:
            walls[mode].append(worker(mode, c)["wall_s"])
    ratios = [a / s for s, a in zip(walls["sessions"], walls["alone"], strict=True)]
    print(
        f"- training wall-clock, median: population {statistics.median(walls['sessions']):.1f} s,"
        f" sequential {statistics.median(walls['alone']):.1f} s: "
        f"**{statistics.median(ratios):.2f}x** faster (reps: "
        f"{', '.join(f'{x:.2f}' for x in ratios)})"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--algo", default="ppo", choices=list(VARIED))
    p.add_argument("--env", default="cartpole")
    p.add_argument("--set", nargs="*", default=[], help="overrides for every member")
    p.add_argument("--ks", type=int, nargs="*", default=[1, 4, 16, 64])
    p.add_argument("--frames", type=int, default=50_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--alone", type=int, default=4, help="configs timed alone per K (not K=16)")
    p.add_argument("--baseline", help="src tree of rlhp before populations, for the K=1 row")
    p.add_argument("--sessions", type=int, help="max_session N as one population vs sequential")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(work(args.worker, json.loads(sys.stdin.read()), args.baseline)))
        return 0
    sessions(args) if args.sessions else scaling(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
