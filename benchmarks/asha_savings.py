"""What ASHA saves: the same search with and without it, and replays of many schedules.

For each sampler seed, the `ppo_cartpole` preset's search (32 trials, random sampler with that
seed, so both runs sample the same configurations; 2 slots, the machine's cores) runs

  full   meta.search_scheduler=null: every trial trains to env.max_frame
  asha   the preset's schedule (or --schedule)

through the real CLI, each in its own sweep dir. Per run: frames trained (the last frame of each
trial's metrics.csv), wall-clock of the command, and the best COMPLETE trial's objective.

Then the full run's learning curves (total_reward_ma every log_frequency frames, with their
wall_s) are replayed through a real Coordinator for many schedules: trials start in number
order on 2 slots, each report happens at the trial's start time plus its own wall_s, a stopped
trial frees its slot at once. This gives the exact frames each schedule would have saved on
these very trials, and whether the best trial of the full search survives.

  python benchmarks/asha_savings.py [--seeds 0 1] [--trials 32] [--out benchmarks/asha_savings.md]
"""

import argparse
import heapq
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import optuna
import pandas as pd
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import take_machine  # noqa: E402

from rlhp.asha import Coordinator, milestones, scheduler_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PRESET = OmegaConf.load(ROOT / "conf" / "search" / "ppo_cartpole.yaml")
MAX_FRAME = PRESET.env.max_frame
LOG_FREQUENCY = 1000  # finer than the preset's, so that replays see every rung
SLOTS = 2
SCHEDULES = [
    {"grace_period": g, "reduction_factor": rf}
    for g, rf in itertools.product((1000, 2000, 3000, 5000, 10000), (2, 3, 4))
]


def search(sweep_dir: Path, seed: int, trials: int, scheduler: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "rlhp.train",
        "-m",
        "+search=ppo_cartpole",
        f"hydra.sweep.dir={sweep_dir}",
        f"hydra.sweeper.n_trials={trials}",
        "hydra/sweeper/sampler=random",
        f"hydra.sweeper.sampler.seed={seed}",
        f"hydra.sweeper.max_concurrent={SLOTS}",
        f"log_frequency={LOG_FREQUENCY}",
        f"meta.search_scheduler={scheduler}",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    timing = sweep_dir / "benchmark_wall_s.json"  # a kept run is read back, not run again
    if not timing.exists():
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=sweep_dir.parent, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        timing.write_text(json.dumps(time.perf_counter() - start))
    wall = json.loads(timing.read_text())
    backend = optuna.storages.journal.JournalFileBackend(str(sweep_dir / "study.journal"))
    study = optuna.load_study(study_name="rlhp", storage=optuna.storages.JournalStorage(backend))
    curves = {
        t.number: pd.read_csv(sweep_dir / str(t.number) / "metrics.csv")
        for t in study.trials
        if (sweep_dir / str(t.number) / "metrics.csv").exists()
    }
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    return {
        "command": " ".join(cmd[1:]),
        "frames": int(sum(c.frame.max() for c in curves.values())),
        "wall_s": wall,
        "best": best.value,
        "best_trial": best.number,
        "params": {t.number: t.params for t in study.trials},
        "curves": curves,
        "complete": len(complete),
        "complete_trials": {t.number for t in complete},
        "stopped": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
    }


def replay(run: dict, schedule: dict | None, order: list[int], slots: int = SLOTS) -> dict:
    """Frames, simulated wall-clock and best of ``schedule`` (None: no ASHA) on a run's curves,
    the trials starting in ``order``."""
    curves = run["curves"]
    with tempfile.TemporaryDirectory() as tmp:
        asha = schedule and Coordinator(tmp, **scheduler_settings(schedule, MAX_FRAME))
        queue, events = list(order), []
        frames, finals, end = {}, {}, 0.0

        def start(at: float) -> None:
            trial = queue.pop(0)
            for row in curves[trial].itertuples():
                heapq.heappush(events, (at + row.wall_s, trial, row.frame, row.total_reward_ma))

        for _ in range(min(slots, len(queue))):
            start(0.0)
        last = {t: c.frame.max() for t, c in curves.items()}
        while events:
            at, trial, frame, value = heapq.heappop(events)
            if trial in frames:
                continue  # stopped earlier
            go = asha.report(trial, frame, value) if asha else True
            if not go or frame == last[trial]:
                frames[trial] = frame
                if go and trial in run["complete_trials"]:
                    finals[trial] = value
                end = max(end, at)
                if queue:
                    start(at)
    best = max(finals, key=finals.get)
    return {"frames": sum(frames.values()), "wall_s": end, "best": finals[best], "best_trial": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--schedule", help="ASHA schedule of the asha run (default: the preset's)")
    parser.add_argument("--orders", type=int, default=8, help="trial orders per replay")
    parser.add_argument("--replay-only", action="store_true", help="no asha runs")
    parser.add_argument("--keep", type=Path, help="sweep dirs here (a re-run resumes them)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    preset = OmegaConf.to_container(PRESET.meta.search_scheduler)
    schedule = args.schedule or json.dumps(preset).replace('"', "")
    where = take_machine()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            full = search(base / f"full{seed}", seed, args.trials, "null")
            orders = [sorted(full["curves"])] + [
                random.Random(i).sample(sorted(full["curves"]), len(full["curves"]))
                for i in range(args.orders - 1)
            ]
            full["replay_wall_s"] = replay(full, None, orders[0])["wall_s"]
            print(f"seed {seed}: full {summary(full)}", flush=True)
            run = {"seed": seed, "full": full}
            run["replays"] = {
                json.dumps(s): [replay(full, s, order) for order in orders] for s in SCHEDULES
            }
            if not args.replay_only:
                run["asha"] = asha = search(base / f"asha{seed}", seed, args.trials, schedule)
                run["same"] = full["params"] == asha["params"]
                print(f"seed {seed}: asha {summary(asha)}", flush=True)
            runs.append(run)
    text = report(runs, schedule, where, args)
    print(text)
    if args.out:
        args.out.write_text(text)


def summary(run: dict) -> str:
    return (
        f"{run['frames']:,} frames, {run['wall_s']:.0f} s, best {run['best']:.1f} "
        f"(trial {run['best_trial']})"
    )


def span(values: list[float], fmt: str = "{:.2f}") -> str:
    s = pd.Series(values)
    return f"{fmt.format(s.median())} [{fmt.format(s.min())}-{fmt.format(s.max())}]"


def report(runs: list[dict], schedule: str, where: str, args: argparse.Namespace) -> str:
    seeds = " ".join(map(str, args.seeds))
    out = [
        f"# ASHA savings ({date.today()})",
        "",
        f"`python benchmarks/asha_savings.py --seeds {seeds} --trials {args.trials} "
        f"--orders {args.orders}`",
        "",
        f"Machine: {where}.",
        "",
        f"## The same search with and without ASHA ({args.trials} trials, max_frame "
        f"{MAX_FRAME:,}, schedule `{schedule}`)",
        "",
        "| seed | run | frames | wall-clock s | best (trial) | complete / stopped |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        for name in ("full", "asha")[: 1 if args.replay_only else 2]:
            run = r[name]
            out.append(
                f"| {r['seed']} | {name} | {run['frames']:,} | {run['wall_s']:.0f} | "
                f"{run['best']:.1f} ({run['best_trial']}) | {run['complete']} / {run['stopped']} |"
            )
    if not args.replay_only:
        ratio = [r["full"]["frames"] / r["asha"]["frames"] for r in runs]
        wall = [r["full"]["wall_s"] / r["asha"]["wall_s"] for r in runs]
        out += [
            "",
            f"Frames saved (full / asha): {span(ratio)}x; wall-clock: {span(wall)}x; "
            f"same configurations sampled in both runs: {all(r['same'] for r in runs)}.",
        ]
    out += [
        "",
        "## Replays of the full runs' curves",
        "",
        f"2 slots; the trials start in number order (the prior first, as in the real runs) and in "
        f"{args.orders - 1} shuffled orders. Median [range] over seeds and orders; 'best kept': "
        "share of replays in which the full search's best trial completes; 'best': the best "
        "complete trial's objective.",
        "",
        "| schedule | rungs | frames saved | wall-clock saved | best | best kept |",
        "|---|---|---|---|---|---|",
    ]
    for s in SCHEDULES:
        key = json.dumps(s)
        ms = milestones(s["grace_period"], s["reduction_factor"], MAX_FRAME)
        reps = [(r, x) for r in runs for x in r["replays"][key]]
        saved = [r["full"]["frames"] / x["frames"] for r, x in reps]
        walls = [r["full"]["replay_wall_s"] / x["wall_s"] for r, x in reps]
        bests = [x["best"] for _, x in reps]
        kept = sum(x["best_trial"] == r["full"]["best_trial"] for r, x in reps)
        out.append(
            f"| grace {s['grace_period']}, rf {s['reduction_factor']} | {ms} | {span(saved)}x | "
            f"{span(walls)}x | {span(bests, '{:.1f}')} | {kept}/{len(reps)} |"
        )
    fulls = [r["full"]["best"] for r in runs]
    out += ["", f"Full-search best: {span(fulls, '{:.1f}')}.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    main()
