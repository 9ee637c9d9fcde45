"""Slot utilisation: asynchronous rlhp slots against the stock Optuna sweeper's batches.

The same 8 CartPole trials of unequal length (env.max_frame from a fixed list, like a search
where most trials are stopped early and a few run to the end) run twice on this machine, both
through the submitit_local launcher with 2 slots:

  rlhp    hydra/sweeper=rlhp   hydra.sweeper.max_concurrent=2   (a slot refills when it frees)
  optuna  hydra/sweeper=optuna hydra.sweeper.n_jobs=2           (batches of 2, each waits for
                                                                 its slowest trial)

Both use the grid sampler over `env.max_frame=choice(...)` with the prior off, so both run the
same trials in the same order: GridSampler shuffles its points with seed 0 and gives point k to
trial k.

What is measured: a trial occupies its slot from its submission to its end, read from the
launcher's own files in <sweep dir>/.submitit: the mtime of `<job>_submitted.pkl` (written just
before the trial process starts) to the mtime of `<job>_<task>_result.pkl` (written by the trial
process as it ends). Same launcher, same files, same clock for both sweepers. Then

  utilisation = busy slot-seconds / (slots * (last end - first start)).

What happens after the result is written counts as idle: for the stock sweeper the trial
process's exit (Python tearing down torch and friends: 1-6 s here) and submitit's 1 s poll; rlhp
takes a local job as done once its result file exists (rlhp/sweep/_local.py), so only the poll.
Utilisation counts slot occupancy, not CPU: where the cores are already oversubscribed (load
average above the core count), a trial runs faster while the other slot idles, so the time to
finish gains less than the utilisation. The load average is printed beside the figures.

  python benchmarks/slot_utilisation.py [--repeat 2] [--out benchmarks/slot_utilisation.md]
                                        [--keep DIR]
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import take_machine

FRAMES = [1000, 1500, 2000, 3000, 5000, 8000, 12000, 20000]
SLOTS = 2
COMMON = ["log_frequency=500", f"env.max_frame=choice({', '.join(map(str, FRAMES))})"]
MODES = {
    "rlhp (async slots)": [
        "hydra/sweeper=rlhp",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.prior=false",
        f"hydra.sweeper.max_concurrent={SLOTS}",
        f"hydra.sweeper.n_trials={len(FRAMES)}",
    ],
    "optuna (batches)": [
        "hydra/sweeper=optuna",
        "hydra/sweeper/sampler=grid",
        "hydra.sweeper.direction=maximize",
        f"hydra.sweeper.n_jobs={SLOTS}",
        f"hydra.sweeper.n_trials={len(FRAMES)}",
    ],
}


def run(sweep_dir: Path, overrides: list[str]) -> float:
    cmd = [sys.executable, "-m", "rlhp.train", "-m", f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    start = time.time()
    proc = subprocess.run(
        cmd + COMMON + overrides, cwd=sweep_dir.parent, env=env, capture_output=True, text=True
    )
    wall = time.time() - start
    if proc.returncode != 0:
        sys.exit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall


def intervals(sweep_dir: Path) -> list[tuple[float, float]]:
    """(start, end) of every trial from submitit's files: submission to result."""
    spans = []
    for result in sorted((sweep_dir / ".submitit").glob("*/*_result.pkl")):
        job = result.name.split("_")[0]
        submitted = result.parent / f"{job}_submitted.pkl"
        spans.append((submitted.stat().st_mtime, result.stat().st_mtime))
    if len(spans) != len(FRAMES):
        sys.exit(f"{sweep_dir}: {len(spans)} finished trials, expected {len(FRAMES)}")
    return sorted(spans)


def order(sweep_dir: Path) -> list[int]:
    """env.max_frame of trials 0, 1, ... as the trial processes ran them."""
    frames = []
    for n in range(len(FRAMES)):
        text = (sweep_dir / str(n) / ".hydra" / "overrides.yaml").read_text()
        frames.append(int(text.split("env.max_frame=")[1].split()[0]))
    return frames


def measure(label: str, sweep_dir: Path) -> dict:
    overrides = list(MODES[label])
    if label.startswith("optuna"):  # keep its study (in memory by default) to look at later
        sweep_dir.mkdir(parents=True)
        overrides.append(f"hydra.sweeper.storage=sqlite:///{sweep_dir}/optuna.db")
    wall = run(sweep_dir, overrides)
    spans = intervals(sweep_dir)
    busy = sum(end - start for start, end in spans)
    span = max(end for _, end in spans) - spans[0][0]
    return {
        "label": label,
        "busy": busy,
        "span": span,
        "utilisation": busy / (SLOTS * span),
        "wall": wall,
        "order": order(sweep_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".md"))
    parser.add_argument("--keep", type=Path, help="keep the sweep directories here")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, order alternating")
    args = parser.parse_args()
    take_machine()
    root = args.keep or Path(tempfile.mkdtemp(prefix="slot_utilisation_"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for rep in range(args.repeat):
        labels = list(MODES) if rep % 2 == 0 else list(reversed(MODES))
        for label in labels:
            sweep_dir = root / f"{rep}_{label.split()[0]}"
            shutil.rmtree(sweep_dir, ignore_errors=True)
            load = os.getloadavg()[0]
            rows.append({**measure(label, sweep_dir), "run": rep + 1, "load": load})
            print(f"run {rep + 1} {label}: done in {rows[-1]['wall']:.0f}s", file=sys.stderr)
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    if len({tuple(r["order"]) for r in rows}) != 1:
        print("warning: the sweeps ran the trials in different orders", file=sys.stderr)

    host = f"{platform.node()}, {os.cpu_count()} CPUs"
    lines = [
        "## Slot utilisation: asynchronous slots vs batches",
        "",
        f"`python benchmarks/slot_utilisation.py --repeat {args.repeat}` on {host};"
        f" {len(FRAMES)} PPO CartPole trials, env.max_frame {FRAMES} (grid order:"
        f" {rows[0]['order']}), {SLOTS} slots, submitit_local launcher. A trial is busy from its"
        " submission to its result (submitit's files); utilisation = busy slot-seconds /"
        " (slots x first start to last end); the trial process's exit and submitit's poll count"
        " as idle. Utilisation counts slot occupancy, not CPU: on oversubscribed cores (load"
        " above the core count) a trial runs faster while the other slot idles.",
        "",
        "| sweeper | run | load (1 min) | busy slot-s | first start to last end (s) | "
        "slot utilisation | sweep command wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (list(MODES).index(r["label"]), r["run"])):
        lines.append(
            f"| {r['label']} | {r['run']} | {r['load']:.1f} | {r['busy']:.1f} | {r['span']:.1f} |"
            f" {r['utilisation']:.0%} | {r['wall']:.1f} |"
        )
    for label in MODES:
        mine = [r for r in rows if r["label"] == label]
        mean = {k: sum(r[k] for r in mine) / len(mine) for k in ("busy", "span", "wall", "load")}
        util = sum(r["utilisation"] for r in mine) / len(mine)
        lines.append(
            f"| **{label}, mean** | {len(mine)} runs | {mean['load']:.1f} | {mean['busy']:.1f} |"
            f" {mean['span']:.1f} | **{util:.0%}** | {mean['wall']:.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
