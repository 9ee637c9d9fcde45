"""Breakout: rlhp PPO training frames/s against the raw ale_py AtariVectorEnv step rate.

Both use the env rlhp builds for `env=breakout` (ALE/Breakout-v5 through ale_py's AtariVectorEnv: 8
envs, 84x84 gray, frame skip 4, 4-frame stack, sticky actions 0.25, same-step autoreset;
num_threads from the config). "Raw" steps it with uniformly random actions and nothing else; "rlhp"
runs `Population.run()` of one member (default PPO Atari settings: conf/algo/ppo.yaml +
conf/tuned/ppo_breakout.yaml, Nature CNN, 128-step rollouts, 4 epochs of 256-sample minibatches,
CPU, torch_threads from the config) for a few thousand frames. A frame is one env step of one env
(= 4 ALE frames), as rlhp counts them. Each measurement is a fresh subprocess timing only the
stepping/training; raw and rlhp alternate; medians and the ratio rlhp/raw (how close training gets
to the env's limit) are printed, with rlhp's time split into rollout (act + env step) and PPO
update.

    python benchmarks/atari_speed.py [--frames 4096] [--raw-frames 20000] [--reps 2]

"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _machine import take_machine


def compose_cfg(frames: int):
    from hydra import compose, initialize_config_dir

    from rlhp.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR):
        return compose("config", overrides=["algo=ppo", "env=breakout", f"env.max_frame={frames}"])


def run_raw(frames: int) -> dict:
    import numpy as np

    from rlhp.env import make_vec

    cfg = compose_cfg(frames)
    env = make_vec(cfg, cfg.env.num_envs)
    env.reset(seed=0)
    n, rng = cfg.env.num_envs, np.random.default_rng(0)
    steps = -(-frames // n)
    actions = rng.integers(env.single_action_space.n, size=(steps, n))
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    wall = time.perf_counter() - start
    env.close()
    return {"frames": steps * n, "wall_s": wall, "update_s": 0.0}


def run_rlhp(frames: int) -> dict:
    from rlhp.algo.ppo import PPO
    from rlhp.population import Member, Population

    cfg = compose_cfg(frames)
    torch.set_num_threads(cfg.torch_threads)
    spent = [0.0]
    update = PPO.update

    def timed_update(self, frames):
        t = time.perf_counter()
        out = update(self, frames)
        spent[0] += time.perf_counter() - t
        return out

    PPO.update = timed_update
    with tempfile.TemporaryDirectory() as run_dir:
        member = Member(cfg, Path(run_dir))
        population = Population([member], torch.device("cpu"))  # a single run: K = 1
        start = time.perf_counter()
        population.run()
        wall = time.perf_counter() - start
    return {"frames": member.frame, "wall_s": wall, "update_s": spent[0]}


def worker(which: str, frames: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", which, "--frames", str(frames)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["fps"] = result["frames"] / result["wall_s"]
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=4096, help="rlhp training frames per rep")
    p.add_argument("--raw-frames", type=int, default=20_000, help="raw env frames per rep")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--worker", choices=["raw", "rlhp"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        run = run_raw if args.worker == "raw" else run_rlhp
        print(json.dumps(run(args.frames)))
        return 0

    import ale_py

    cfg = compose_cfg(args.frames)
    a = cfg.algo
    print(
        "## Breakout speed, rlhp PPO training vs raw AtariVectorEnv (`benchmarks/atari_speed.py`)\n"
    )
    print(f"- command: `python {' '.join(sys.argv)}`")
    take_machine(f"ale_py {ale_py.__version__}")
    print(
        f"- env: {cfg.env.id}, num_envs {cfg.env.num_envs}, num_threads {cfg.env.num_threads},"
        f" sticky {cfg.env.sticky_action}; PPO: time_horizon {a.time_horizon}, minibatch"
        f" {a.minibatch_size}, epochs {a.training_epoch}, {cfg.env.net} {list(a.hid_layers)},"
        f" torch_threads {cfg.torch_threads}, CPU"
    )
    print(
        f"- {args.reps} alternating repetitions: raw {args.raw_frames:,} frames, rlhp"
        f" {args.frames:,} frames (frame = one env step of one env = 4 ALE frames)\n"
    )
    print("| rep | what | frames | wall s | frames/s | PPO update share of wall |")
    print("|---:|---|---:|---:|---:|---:|")
    fps: dict[str, list[float]] = {"raw": [], "rlhp": []}
    rollout_fps: list[float] = []
    for rep in range(args.reps):
        order = ["raw", "rlhp"] if rep % 2 == 0 else ["rlhp", "raw"]
        for which in order:
            r = worker(which, args.raw_frames if which == "raw" else args.frames)
            fps[which].append(r["fps"])
            share = "" if which == "raw" else f"{r['update_s'] / r['wall_s']:.0%}"
            if which == "rlhp":
                rollout_fps.append(r["frames"] / (r["wall_s"] - r["update_s"]))
            print(
                f"| {rep} | {which} | {r['frames']:,} | {r['wall_s']:.1f} | {r['fps']:.0f} "
                f"| {share} |",
                flush=True,
            )
    raw, rl, roll = (statistics.median(v) for v in (fps["raw"], fps["rlhp"], rollout_fps))
    print(
        f"\n- **median frames/s: raw env {raw:.0f}, rlhp training {rl:.0f}; "
        f"ratio rlhp/raw = {rl / raw:.3f}**"
    )
    print(
        f"- rlhp rollout alone (act + env step, update time taken out): {roll:.0f} frames/s,"
        f" {roll / raw:.2f} of raw\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
