"""Idle members: what a population of K = 16 PPO CartPole slots costs when only A of them train.

In a search, slots empty out (ASHA stops members, members fail, slots wait for refill); the
engine should then cost what the A active members cost. Each measurement is a fresh subprocess
pinned to one core (`taskset -c 0`, OMP_NUM_THREADS=1, 1 torch thread) that drives the engine
as rlhp.population does (act, env step, observe, update) for `--rollouts` rollouts after one
of warm-up, and reports the active members' frames per second of its own CPU time (the machine
is shared: CPU time is what other processes disturb least) and of wall-clock:

  K16     16 slots, A active (the others' `active` False: a stopped member, an empty slot)
  KA      a population of the A members only: what compacting the actives into rows 0..A-1
          would cost at best (without moving members, env copies and optimiser state)
  before  K16 on the code of `--baseline SRC` (a checkout before idle members were skipped,
          e.g. `git worktree add /tmp/old <commit>`): stepped, forwarded, masked

    python benchmarks/idle_members.py [--actives 4 8 16] [--reps 3] [--rollouts 10]
                                      [--baseline /tmp/old]
"""

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import take_machine

ROOT = Path(__file__).resolve().parents[1]
K = 16


def work(slots: int, active: int, rollouts: int) -> dict:
    """In the worker: `slots` members of the tuned PPO CartPole config (lr varied), the first
    `active` of them training; CPU and wall seconds of `rollouts` rollouts after a warm-up."""
    import torch
    from hydra import compose, initialize_config_dir

    from rlhp import algo
    from rlhp.env import VecEnv

    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        overrides = [[f"seed={k}", f"algo.lr={1e-3 * (1 + k / K)}"] for k in range(slots)]
        cfgs = [compose("config", o) for o in overrides]
    env = VecEnv(cfgs[0], [c.algo.gamma for c in cfgs], members=slots)
    agent = algo.make(cfgs, env, torch.device("cpu"))
    for k, cfg in enumerate(cfgs):
        agent.set_member(k, cfg.algo, cfg.seed)
    agent.active[active:] = False
    mask = agent.active.host if "active" in inspect.signature(env.step).parameters else None
    step = env.step if mask is None else lambda action: env.step(action, mask)
    obs, frames = env.reset([c.seed for c in cfgs]), np.zeros(slots, np.int64)
    done, cpu, wall = 0, 0.0, 0.0
    while done <= rollouts:
        obs, reward, terminated, truncated, final_obs = step(agent.act(obs))
        frames += env.num_envs
        agent.observe(obs, reward, terminated, truncated, final_obs)
        if agent.update(frames) is not None:
            done += 1
            if done == 1:  # the warm-up rollout
                cpu, wall = time.process_time(), time.perf_counter()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    active_frames = active * env.num_envs * cfgs[0].algo.time_horizon * rollouts
    return {"cpu_fps": active_frames / cpu, "wall_fps": active_frames / wall}


def worker(slots: int, active: int, rollouts: int, src: str | None = None) -> dict:
    cmd = ["taskset", "-c", "0", sys.executable, __file__, "--worker", str(slots), str(active)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if src:
        env["PYTHONPATH"] = str(Path(src) / "src")
    out = subprocess.run(
        [*cmd, "--rollouts", str(rollouts)], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def cell(runs: list[dict], key: str) -> str:
    values = [r[key] for r in runs]
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actives", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=10)
    parser.add_argument("--baseline", help="a checkout of rlhp that steps idle members")
    parser.add_argument("--worker", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(work(*args.worker, args.rollouts)))
        return
    print(f"- command: `python {' '.join(sys.argv)}`")
    take_machine("pinned to core 0, 1 torch thread")
    print(f"- {args.rollouts} rollouts of 8 envs x 32 steps per member after one of warm-up;")
    print("  frames/s of the active members: median [range] of the repetitions\n")
    modes = {"K16": lambda a: (K, a, None), "KA": lambda a: (a, a, None)}
    if args.baseline:
        modes["before"] = lambda a: (K, a, args.baseline)
    print(f"| A | {' | '.join(f'{m} CPU-time frames/s' for m in modes)} | K16 / KA (CPU) |"
          f" {' | '.join(f'{m} wall frames/s' for m in modes)} |")  # fmt: skip
    print(f"|---:|{'---:|' * (2 * len(modes) + 1)}")
    for a in args.actives:
        runs = {m: [] for m in modes}
        for rep in range(args.reps):
            order = list(modes) if rep % 2 == 0 else list(modes)[::-1]
            for m in order:
                slots, active, src = modes[m](a)
                runs[m].append(worker(slots, active, args.rollouts, src))
        ratio = statistics.median(
            x["cpu_fps"] / y["cpu_fps"] for x, y in zip(runs["K16"], runs["KA"], strict=True)
        )
        cpu = " | ".join(cell(runs[m], "cpu_fps") for m in modes)
        wall = " | ".join(cell(runs[m], "wall_fps") for m in modes)
        print(f"| {a} | {cpu} | **{ratio:.2f}** | {wall} |", flush=True)


if __name__ == "__main__":
    main()
