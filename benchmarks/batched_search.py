"""Batched search vs one process per trial: the same ppo_cartpole search with ASHA (same sampler
seed, same n_trials), once with `hydra.sweeper.population=P` and once with today's one process
per trial, side by side in one invocation (alternating order).

Figures per run: wall-clock of the whole sweep command, the best objective, total frames
trained, trial states, structures explored (distinct structural signatures among the trials
trained), population jobs, and slot utilisation: the trials' training time summed, over the
slots (processes x members per process) times the sweep's wall-clock.

    python benchmarks/batched_search.py --n-trials 64 --population 16 --reps 2
    python benchmarks/batched_search.py --population-trials 64 16 --same-wall 16  # old vs new
    python benchmarks/batched_search.py --n-trials 8 --population 4 --reps 3   # the README's
    python benchmarks/batched_search.py --n-trials 32 --population 8 --structure-groups 1 2 4
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

import optuna
from _machine import take_machine
from omegaconf import OmegaConf
from optuna.trial import TrialState

from rlhp.config import signature


def structure(sweep_dir: Path, number: int) -> str:
    """A trial's structural signature (what its population shares), as JSON."""
    cfg = OmegaConf.load(sweep_dir / str(number) / ".hydra" / "config.yaml")
    return json.dumps(signature(cfg), sort_keys=True, default=str)


def sweep(sweep_dir: Path, n_trials: int, population: int, seed: int, slots: int, extra) -> dict:
    cmd = [sys.executable, "-m", "rlhp.train", "-m", "+search=ppo_cartpole"]
    cmd += [f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={n_trials}"]
    cmd += [f"hydra.sweeper.population={population}", f"hydra.sweeper.sampler.seed={seed}"]
    cmd += [f"hydra.sweeper.max_concurrent={slots}", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=sweep_dir.parent)
    wall = time.perf_counter() - start
    backend = optuna.storages.journal.JournalFileBackend(str(sweep_dir / "study.journal"))
    study = optuna.load_study(study_name="rlhp", storage=optuna.storages.JournalStorage(backend))
    ran = [t for t in study.trials if "frame" in t.user_attrs]
    complete = [t for t in ran if t.state == TrialState.COMPLETE]
    busy = sum(t.user_attrs["wall_s"] for t in ran)
    kinds = {t.number: structure(sweep_dir, t.number) for t in ran}
    return {
        "wall_s": wall,
        "best": max(t.value for t in complete) if complete else float("nan"),
        "frames": sum(t.user_attrs["frame"] for t in ran),
        "complete": len(complete),
        "stopped": sum(t.state == TrialState.PRUNED for t in ran),
        "failed": sum(
            t.state == TrialState.FAIL and "rejected" not in t.user_attrs for t in study.trials
        ),
        "utilisation": busy / (slots * population * wall),
        "structures": len(set(kinds.values())),
        "jobs": len(list((sweep_dir / "populations").glob("*/inbox.jsonl"))),
    }


def row(rep: int, label: str, r: dict) -> None:
    print(
        f"| {rep} | {label} | {r['wall_s']:.0f} | {r['best']:.1f} | {r['frames']:,} | "
        f"{r['complete']} / {r['stopped']} / {r['failed']} | {r['structures']} | {r['jobs']} | "
        f"{r['utilisation']:.0%} |",
        flush=True,
    )


def summary(name: str, runs: list[dict], base: list[dict]) -> str:
    ratios = [b["wall_s"] / r["wall_s"] for r, b in zip(runs, base, strict=True)]
    best = [r["best"] for r in runs]
    return (
        f"- {name}: wall-clock {statistics.median(ratios):.2f}x less than one per trial "
        f"[{min(ratios):.2f}-{max(ratios):.2f}]; best {statistics.median(best):.1f} "
        f"[{min(best):.1f}-{max(best):.1f}]; structures "
        f"{statistics.median(r['structures'] for r in runs):g}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-trials", type=int, default=64)
    p.add_argument("--population", type=int, default=16)
    p.add_argument(
        "--population-trials",
        nargs="+",
        default=[None],
        help="hydra.sweeper.population_trials of each batched run (default: the sweeper's "
        "default; n_trials: a job is never retired, as before)",
    )
    p.add_argument(
        "--structure-groups",
        type=int,
        nargs="+",
        default=[None],
        help="hydra.sweeper.structure_groups of each batched run (default: the sweeper's)",
    )
    p.add_argument(
        "--same-wall",
        metavar="N",
        help="also run a batched search with population_trials N (null: the default) given the "
        "one-per-trial run's wall-clock as budget_hours and n_trials x 100, as a user with a "
        "fixed allocation compares them",
    )
    p.add_argument("--slots", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", type=Path, help="keep the sweep dirs under this folder")
    args = p.parse_args()
    print("## Batched search vs one process per trial (`benchmarks/batched_search.py`)\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    take_machine()
    print(
        f"- `+search=ppo_cartpole` (ASHA), n_trials {args.n_trials}, {args.slots} slots, "
        f"sampler seed {args.seed + 0}..; population {args.population} vs 1; structures: "
        "distinct structural signatures among the trials trained; jobs: population jobs\n"
    )
    print(
        "| rep | run | wall s | best | frames | complete / stopped / failed | structures "
        "| jobs | util |"
    )
    print("|---:|---|---:|---:|---:|---|---:|---:|---:|")
    variants = {
        f"P{args.population}"
        + (f" N={n}" if n is not None else "")
        + (f" G={g}" if g is not None else ""): (
            [f"hydra.sweeper.population_trials={n}"] if n is not None else []
        )
        + ([f"hydra.sweeper.structure_groups={g}"] if g is not None else [])
        for n in args.population_trials
        for g in args.structure_groups
    }
    runs: dict[str, list[dict]] = {"P1": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for rep in range(args.reps):
            seed = args.seed + rep
            order = [*variants, "P1"] if rep % 2 == 0 else ["P1", *variants]
            for label in order:
                folder = root / f"r{rep}_{label.replace(' ', '_').replace('=', '')}"
                pop = 1 if label == "P1" else args.population
                extra = variants.get(label, [])
                r = sweep(folder, args.n_trials, pop, seed, args.slots, extra)
                runs.setdefault(label, []).append(r)
                row(rep, label, r)
            if args.same_wall:
                hours = runs["P1"][-1]["wall_s"] / 3600
                label = f"P{args.population} N={args.same_wall} same wall"
                folder = root / f"r{rep}_same_wall"
                extra = [f"hydra.sweeper.population_trials={args.same_wall}"]
                extra += [f"hydra.sweeper.budget_hours={hours:.5f}"]
                r = sweep(folder, 100 * args.n_trials, args.population, seed, args.slots, extra)
                runs.setdefault(label, []).append(r)
                row(rep, label, r)
    print()
    for label, rs in runs.items():
        if label != "P1":
            print(summary(label, rs, runs["P1"]))
    best = [r["best"] for r in runs["P1"]]
    print(
        f"- P1 (one process per trial): best {statistics.median(best):.1f} "
        f"[{min(best):.1f}-{max(best):.1f}]; structures "
        f"{statistics.median(r['structures'] for r in runs['P1']):g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
