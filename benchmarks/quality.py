"""The learning table (issue #20): each algorithm's tuned preset on its env beside
stable-baselines3 with rl-baselines3-zoo's hyperparameters, at equal frames, over the same seeds.

  rlhp  python -m rlhp.train algo=A env=E seed=0 max_session=SEEDS env.max_frame=FRAMES
        log_frequency=FRAMES/5 eval_episodes=EPISODES (defaults + conf/tuned/A_E.yaml, chosen
        by algo and env; the seeds 0 ... SEEDS-1 train as one population)
  SB3   the zoo's entry for the env (copied below from rl_zoo3 2.9.2's hyperparams/A.yml), its
        n_envs and schedules as the zoo reads them, FRAMES timesteps; one process per seed

Metric, the same on both sides: `eval`, the mean return of EPISODES greedy (deterministic)
episodes of the final policy (rlhp's final eval_return; SB3 predict(deterministic=True), from the
same episode seeds), and `train`, the mean return of the last 100 training episodes (rlhp's
total_reward_ma; SB3's ep_info_buffer). Each row gives the median [range] over the seeds; the
goal is rlhp's median eval >= SB3's. FRAMES is the zoo's n_timesteps, except HalfCheetah (100k,
not 1M: ten runs of 1M frames are days of this CPU). Jobs run `--slots` at a time, each with
one torch thread, the slowest rows first. Resumable: a finished rlhp run (its result.yaml) or
SB3 seed (its JSON) is kept, an unfinished rlhp run resumes from its checkpoint. Raw results go
to OUT.json beside OUT.

    python benchmarks/quality.py                                    # the full table
    python benchmarks/quality.py --rows ppo_cartpole sac_pendulum --seeds 2 --frames 3000 \\
        --work /tmp/quality --out /tmp/quality/quality.md           # a smoke run
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

from _machine import take_machine
from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
ROWS = {  # row -> (algo, env): rlhp's config groups, conf/tuned/<row>.yaml; fastest first
    "ppo_cartpole": ("ppo", "cartpole"),
    "dqn_cartpole": ("dqn", "cartpole"),
    "a2c_cartpole": ("a2c", "cartpole"),
    "ppo_lunar": ("ppo", "lunar"),
    "sac_pendulum": ("sac", "pendulum"),
    "sac_halfcheetah": ("sac", "halfcheetah"),
}
# rl_zoo3 2.9.2, rl_zoo3/hyperparams/<algo>.yml, the entry named in the comment; policy_kwargs
# written as the dict the zoo evaluates from its string
ZOO = {
    "ppo_cartpole": {  # ppo.yml CartPole-v1
        "n_envs": 8, "n_timesteps": 1e5, "policy": "MlpPolicy", "n_steps": 32,
        "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0,
        "learning_rate": "lin_0.001", "clip_range": "lin_0.2",
    },
    "dqn_cartpole": {  # dqn.yml CartPole-v1
        "n_timesteps": 5e4, "policy": "MlpPolicy", "learning_rate": 2.3e-3, "batch_size": 64,
        "buffer_size": 100000, "learning_starts": 1000, "gamma": 0.99,
        "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
        "exploration_fraction": 0.16, "exploration_final_eps": 0.04,
        "policy_kwargs": {"net_arch": [256, 256]},
    },
    "a2c_cartpole": {  # a2c.yml CartPole-v1
        "n_envs": 8, "n_timesteps": 5e5, "policy": "MlpPolicy", "ent_coef": 0.0,
    },
    "ppo_lunar": {  # ppo.yml LunarLander-v3
        "n_envs": 16, "n_timesteps": 1e6, "policy": "MlpPolicy", "n_steps": 1024,
        "batch_size": 64, "gae_lambda": 0.98, "gamma": 0.999, "n_epochs": 4, "ent_coef": 0.01,
    },
    "sac_pendulum": {  # sac.yml Pendulum-v1
        "n_timesteps": 20000, "policy": "MlpPolicy", "learning_rate": 1e-3,
    },
    "sac_halfcheetah": {  # sac.yml HalfCheetah-v4 (both sides run HalfCheetah-v5 here)
        "n_timesteps": 1e6, "policy": "MlpPolicy", "learning_starts": 10000,
    },
}  # fmt: skip
FIT = {"sac_halfcheetah": 100_000}  # budgets below the zoo's that fit this machine
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def frames_of(row: str, frames: int | None) -> int:
    return frames or FIT.get(row) or int(ZOO[row]["n_timesteps"])


def env_id(row: str) -> str:
    return OmegaConf.load(HERE.parent / "conf" / "env" / f"{ROWS[row][1]}.yaml").id


# ---------------------------------------------------------------- stable-baselines3 worker


def sb3_kwargs(hyper: dict) -> dict:
    """The zoo's entry as SB3 keyword arguments, as rl_zoo3's ExperimentManager reads it:
    "lin_X" is a linear schedule from X to 0; n_envs, n_timesteps and policy are not kwargs."""
    kwargs = {k: v for k, v in hyper.items() if k not in ("n_envs", "n_timesteps", "policy")}
    for key, value in kwargs.items():
        if isinstance(value, str) and value.startswith("lin_"):
            start = float(value.removeprefix("lin_"))
            kwargs[key] = lambda progress_remaining, start=start: progress_remaining * start
    return kwargs


def sb3_run(row: str, seed: int, frames: int, episodes: int) -> dict:
    """Train SB3 with the zoo's hyperparameters; score the final policy as rlhp scores its own."""
    import numpy as np
    import stable_baselines3
    import torch
    from algos import greedy_return
    from stable_baselines3.common.env_util import make_vec_env

    from rlhp.member import EVAL_SEED

    torch.set_num_threads(1)
    hyper, algo = ZOO[row], getattr(stable_baselines3, ROWS[row][0].upper())
    env = make_vec_env(env_id(row), n_envs=hyper.get("n_envs", 1), seed=seed)
    model = algo(hyper["policy"], env, seed=seed, device="cpu", verbose=0, **sb3_kwargs(hyper))
    start = time.perf_counter()
    model.learn(total_timesteps=frames)
    wall = time.perf_counter() - start
    first = EVAL_SEED + seed + model.num_timesteps  # rlhp's seeds for its evaluation episodes
    returns = [greedy_return(model, env_id(row), first + i) for i in range(episodes)]
    train = [info["r"] for info in model.ep_info_buffer]  # the last 100 training episodes
    return {
        "seed": seed,
        "frames": model.num_timesteps,
        "eval": float(np.mean(returns)),
        "train": float(np.mean(train)) if train else float("nan"),
        "wall_s": wall,
    }


# ---------------------------------------------------------------- the two sides of a row


def rlhp_command(row: str, run_dir: Path, args) -> list[str]:
    algo, env = ROWS[row]
    frames = frames_of(row, args.frames)
    cmd = [sys.executable, "-m", "rlhp.train", f"algo={algo}", f"env={env}", "seed=0"]
    cmd += [f"max_session={args.seeds}", f"env.max_frame={frames}"]
    cmd += [f"log_frequency={max(frames // 5, 1)}", f"eval_episodes={args.eval_episodes}"]
    return cmd + [f"hydra.run.dir={run_dir}"]


def rlhp_side(row: str, row_dir: Path, args) -> dict:
    """One population of `args.seeds` seeds (kept once its result.yaml exists; resumed else)."""
    run_dir = row_dir / f"rlhp_seeds{args.seeds}"
    cmd = rlhp_command(row, run_dir, args)
    if not (run_dir / "result.yaml").exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir.parent / f"{run_dir.name}.log").open("a") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    result = OmegaConf.load(run_dir / "result.yaml")
    per_seed = [
        {"seed": s, "frames": x.frame, "eval": float(x.eval), "train": float(x.final)}
        for s, x in enumerate(result.sessions)
    ]
    return {"cmd": cmd, "per_seed": per_seed, "wall_s": result.wall_s}


def sb3_side(row: str, seed: int, row_dir: Path, args) -> dict:
    """One SB3 seed in its own process (kept once its JSON exists)."""
    out = row_dir / f"sb3_s{seed}.json"
    if not out.exists():
        cmd = [sys.executable, __file__, "--sb3-worker", row, "--seed", str(seed)]
        cmd += ["--frames", str(frames_of(row, args.frames))]
        cmd += ["--eval-episodes", str(args.eval_episodes), "--out", str(out)]
        with (row_dir / f"sb3_s{seed}.log").open("w") as log:
            subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    return json.loads(out.read_text())


def collect(args) -> dict:
    """Every row's rlhp population and SB3 seeds, `args.slots` jobs at a time."""
    jobs = []  # (row, its dir, None for the rlhp population or an SB3 seed)
    for row in sorted(args.rows, key=list(ROWS).index, reverse=True):  # the slowest rows first
        row_dir = args.work / f"{row}_f{frames_of(row, args.frames)}_e{args.eval_episodes}"
        row_dir.mkdir(parents=True, exist_ok=True)
        jobs += [(row, row_dir, None)] + [(row, row_dir, s) for s in range(args.seeds)]

    def run(job: tuple) -> dict:
        row, row_dir, seed = job
        return rlhp_side(row, row_dir, args) if seed is None else sb3_side(row, seed, row_dir, args)

    with ThreadPoolExecutor(args.slots) as pool:
        done = list(pool.map(run, jobs))
    rows = {row: {"frames": frames_of(row, args.frames)} for row in args.rows}
    for (row, _, seed), result in zip(jobs, done, strict=True):
        if seed is None:
            rows[row]["rlhp"] = result
        else:
            rows[row].setdefault("sb3", {"per_seed": []})["per_seed"].append(result)
    return rows


# ---------------------------------------------------------------- the report


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f} to {max(values):.1f}]"


def table(rows: dict) -> list[str]:
    lines = [
        "| row | env | frames | **eval rlhp** | **eval SB3 (zoo)** | goal: rlhp median >= SB3 "
        "| train rlhp | train SB3 (zoo) |",
        "|---|---|---:|---|---|---|---|---|",
    ]
    for row, r in rows.items():
        mine, zoo = r["rlhp"]["per_seed"], r["sb3"]["per_seed"]
        met = statistics.median(x["eval"] for x in mine) >= statistics.median(
            x["eval"] for x in zoo
        )
        lines.append(
            f"| {row} | {env_id(row)} | {r['frames']:,} "
            f"| **{spread([x['eval'] for x in mine])}** | **{spread([x['eval'] for x in zoo])}** "
            f"| {'met' if met else '**not met**'} | {spread([x['train'] for x in mine])} "
            f"| {spread([x['train'] for x in zoo])} |"
        )
    return lines


def seed_rows(rows: dict) -> list[str]:
    lines = ["| row | side | seed | frames | eval | train |", "|---|---|---:|---:|---:|---:|"]
    for row, r in rows.items():
        for side in ("rlhp", "sb3"):
            for x in sorted(r[side]["per_seed"], key=lambda x: x["seed"]):
                lines.append(
                    f"| {row} | {side} | {x['seed']} | {x['frames']:,} | {x['eval']:.1f} "
                    f"| {x['train']:.1f} |"
                )
    return lines


def report(rows: dict, args, where: str, wall: float) -> str:
    lines = [
        "## Learning table: tuned presets beside SB3 + rl-baselines3-zoo (`benchmarks/quality.py`)",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- date: {date.today()}; machine: {where}; {wall / 60:.1f} min in all, {args.slots} "
        "jobs at a time, one torch thread each",
        f"- seeds 0-{args.seeds - 1} on both sides (rlhp: one population, `max_session="
        f"{args.seeds}`; SB3: a process per seed); eval: mean return of {args.eval_episodes} "
        "greedy episodes of the final policy; train: mean return of the last 100 training "
        "episodes; median [range] over the seeds",
        "- rlhp: `python -m rlhp.train algo=A env=E seed=0 max_session=N env.max_frame=FRAMES "
        f"log_frequency=FRAMES/5 eval_episodes={args.eval_episodes}`; SB3 2.9.2 with the zoo's "
        "entry for the env (rl_zoo3 2.9.2 hyperparams/A.yml, copied into the script)",
        "",
        *table(rows),
        "",
        *seed_rows(rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--frames", type=int, help="frames of every row (default: each row's budget)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--slots", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--work", type=Path, default=HERE.parent / "multirun" / "quality")
    p.add_argument("--out", type=Path, default=HERE / "quality.md")
    p.add_argument("--sb3-worker", metavar="ROW", choices=list(ROWS), help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sb3_worker:
        result = sb3_run(args.sb3_worker, args.seed, args.frames, args.eval_episodes)
        args.out.write_text(json.dumps(result))
        return 0
    args.work = args.work.resolve()
    where = take_machine()
    start = time.perf_counter()
    rows = collect(args)
    wall = time.perf_counter() - start
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("sb3_worker", "seed")}
    raw = {"settings": settings, "machine": where, "date": str(date.today()), "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    text = report(rows, args, where, wall)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
