"""Batched search vs one process per trial: the same ppo_cartpole search with ASHA (same sampler
seed, same n_trials), once with `hydra.sweeper.population=P` and once with today's one process
per trial, side by side in one invocation (alternating order).

Figures per run: wall-clock of the whole sweep command, the best objective, total frames
trained, trial states, and slot utilisation: the trials' training time summed, over the slots
(processes x members per process) times the sweep's wall-clock.

    python benchmarks/batched_search.py --n-trials 64 --population 16 --reps 2
    python benchmarks/batched_search.py --n-trials 8 --population 4 --reps 3   # the README's
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from _machine import machine
from optuna.trial import TrialState


def sweep(sweep_dir: Path, n_trials: int, population: int, seed: int, slots: int) -> dict:
    cmd = [sys.executable, "-m", "rlhp.train", "-m", "+search=ppo_cartpole"]
    cmd += [f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.n_trials={n_trials}"]
    cmd += [f"hydra.sweeper.population={population}", f"hydra.sweeper.sampler.seed={seed}"]
    cmd += [f"hydra.sweeper.max_concurrent={slots}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=sweep_dir.parent)
    wall = time.perf_counter() - start
    backend = optuna.storages.journal.JournalFileBackend(str(sweep_dir / "study.journal"))
    study = optuna.load_study(study_name="rlhp", storage=optuna.storages.JournalStorage(backend))
    ran = [t for t in study.trials if "frame" in t.user_attrs]
    complete = [t for t in ran if t.state == TrialState.COMPLETE]
    busy = sum(t.user_attrs["wall_s"] for t in ran)
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
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n-trials", type=int, default=64)
    p.add_argument("--population", type=int, default=16)
    p.add_argument("--slots", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print("## Batched search vs one process per trial (`benchmarks/batched_search.py`)\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    print(f"- machine: {machine()}")
    print(
        f"- `+search=ppo_cartpole` (ASHA), n_trials {args.n_trials}, {args.slots} slots, "
        f"sampler seed {args.seed + 0}..; population {args.population} vs 1\n"
    )
    print("| rep | population | wall s | best | frames | complete / stopped / failed | util |")
    print("|---:|---:|---:|---:|---:|---|---:|")
    runs: dict[int, list[dict]] = {args.population: [], 1: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            order = [args.population, 1] if rep % 2 == 0 else [1, args.population]
            for pop in order:
                folder = Path(tmp) / f"r{rep}p{pop}"
                r = sweep(folder, args.n_trials, pop, args.seed + rep, args.slots)
                runs[pop].append(r)
                print(
                    f"| {rep} | {pop} | {r['wall_s']:.0f} | {r['best']:.1f} | {r['frames']:,} | "
                    f"{r['complete']} / {r['stopped']} / {r['failed']} | "
                    f"{r['utilisation']:.0%} |",
                    flush=True,
                )
    ratios = [
        a["wall_s"] / b["wall_s"] for a, b in zip(runs[1], runs[args.population], strict=True)
    ]
    print(
        f"\n- **wall-clock: one process per trial / population {args.population} = "
        f"{statistics.median(ratios):.2f}x** (per repetition: "
        f"{', '.join(f'{x:.2f}' for x in ratios)}); best objective, median: "
        f"{statistics.median(r['best'] for r in runs[args.population]):.1f} (population) vs "
        f"{statistics.median(r['best'] for r in runs[1]):.1f} (one per trial)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
