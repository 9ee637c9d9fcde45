"""PPO learns: CartPole-v1 to total_reward_ma >= 475 within 100k frames (>= 4 of 5 seeds),
and HalfCheetah-v5 to >= 1500 within 1M frames (one seed).

Runs the real CLI (`python -m rlhp.train env=... seed=S hydra.run.dir=DIR`) once per seed,
one after another, and reads DIR/metrics.csv. `log_frequency` only sets how often
total_reward_ma is written (and the checkpoint taken); it does not change training.

    python benchmarks/ppo_learning.py                      # CartPole, seeds 0-4 (~2 min a seed)
    python benchmarks/ppo_learning.py --halfcheetah        # + HalfCheetah seed 1 (~1 h on CPU)
    python benchmarks/ppo_learning.py --cartpole-seeds --halfcheetah-dir DIR   # summarise a run

Prints a markdown table (command, machine, figures); exits 1 when a criterion fails.
"""

import argparse
import csv
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import take_machine

CARTPOLE_TARGET, CARTPOLE_FRAMES, CARTPOLE_NEED = 475.0, 100_000, 4
CHEETAH_TARGET, CHEETAH_FRAMES = 1500.0, 1_000_000


def train(env: str, seed: int, run_dir: Path, log_frequency: int, extra: list[str]) -> float:
    cmd = [
        sys.executable, "-m", "rlhp.train", f"env={env}", f"seed={seed}",
        f"log_frequency={log_frequency}", f"hydra.run.dir={run_dir}", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(frame, total_reward_ma, wall_s) rows of session 0."""
    with open(run_dir / "metrics.csv") as f:
        return [
            (int(r["frame"]), float(r["total_reward_ma"]), float(r["wall_s"]))
            for r in csv.DictReader(f)
            if r["session"] == "0"
        ]


def first_reach(rows, target: float) -> int | None:
    return next((frame for frame, ma, _ in rows if ma >= target), None)


def fmt_frame(frame: int | None) -> str:
    return f"{frame:,}" if frame is not None else "never"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cartpole-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    p.add_argument("--halfcheetah", action="store_true", help="also train HalfCheetah (~1 h)")
    p.add_argument("--halfcheetah-seed", type=int, default=1)
    p.add_argument("--halfcheetah-dir", type=Path, help="summarise this finished/ongoing run")
    p.add_argument("--log-frequency", type=int, default=2000)
    p.add_argument("--override", nargs="*", default=[], help="extra overrides for CartPole runs")
    p.add_argument("--out", type=Path, help="run directories here (default: a temp dir)")
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rlhp_ppo_learning_"))
    out.mkdir(parents=True, exist_ok=True)

    print("## PPO learning (`benchmarks/ppo_learning.py`)\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    overrides = "".join(" " + o for o in args.override)
    print(
        "- each CartPole run: `python -m rlhp.train env=cartpole seed=S"
        f" log_frequency={args.log_frequency} hydra.run.dir=DIR{overrides}`"
        " (defaults + conf/tuned/ppo_cartpole.yaml)"
    )
    take_machine()
    print()
    ok = True

    if args.cartpole_seeds:
        print(
            f"CartPole-v1: total_reward_ma >= {CARTPOLE_TARGET:g} within {CARTPOLE_FRAMES:,} "
            f"frames for >= {CARTPOLE_NEED} of {len(args.cartpole_seeds)} seeds\n"
        )
        print("| seed | first frame >= 475 | total_reward_ma at 50k | final (frame) | wall s |")
        print("|---:|---:|---:|---:|---:|")
        passed = 0
        for seed in args.cartpole_seeds:
            run_dir = out / f"cartpole_s{seed}"
            wall = train("cartpole", seed, run_dir, args.log_frequency, args.override)
            rows = curve(run_dir)
            reach = first_reach(rows, CARTPOLE_TARGET)
            passed += reach is not None and reach <= CARTPOLE_FRAMES
            mid = next((ma for frame, ma, _ in rows if frame >= 50_000), math.nan)
            frame, final, _ = rows[-1]
            print(
                f"| {seed} | {fmt_frame(reach)} | {mid:.1f} | {final:.1f} ({frame:,}) "
                f"| {wall:.0f} |",
                flush=True,
            )
        verdict = "PASS" if passed >= CARTPOLE_NEED else "FAIL"
        print(f"\n**CartPole: {passed}/{len(args.cartpole_seeds)} seeds reach 475 — {verdict}**\n")
        ok &= passed >= CARTPOLE_NEED

    cheetah_dir = args.halfcheetah_dir
    if args.halfcheetah and cheetah_dir is None:
        cheetah_dir = out / f"halfcheetah_s{args.halfcheetah_seed}"
        train("halfcheetah", args.halfcheetah_seed, cheetah_dir, 10_000, [])
    if cheetah_dir is not None:
        rows = curve(cheetah_dir)
        frame, final, wall = rows[-1]
        reach = first_reach(rows, CHEETAH_TARGET)
        done = frame >= CHEETAH_FRAMES
        print(
            f"HalfCheetah-v5: total_reward_ma >= {CHEETAH_TARGET:g} within {CHEETAH_FRAMES:,}"
            f" frames; run `python -m rlhp.train env=halfcheetah seed=S hydra.run.dir=DIR`"
            f" (default log_frequency 10000), read from {cheetah_dir}\n"
        )
        print("| frame | total_reward_ma |")
        print("|---:|---:|")
        prev = 0
        for i, (f, ma, _) in enumerate(rows):  # the first row past each 100k, and the last
            if f // 100_000 != prev // 100_000 or i == len(rows) - 1:
                print(f"| {f:,} | {ma:.1f} |")
            prev = f
        status = "finished" if done else f"NOT finished ({frame:,} of {CHEETAH_FRAMES:,} frames)"
        verdict = "PASS" if reach is not None else ("FAIL" if done else "pending")
        print(
            f"\n**HalfCheetah: {status}; first frame >= 1500: {fmt_frame(reach)}; final "
            f"{final:.1f}; {frame / wall:.0f} frames/s over {wall / 60:.0f} min of training"
            f" — {verdict}**\n"
        )
        ok &= verdict != "FAIL"
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
