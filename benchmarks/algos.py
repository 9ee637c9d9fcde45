"""DQN, A2C and SAC beside stable-baselines3: learning at equal frames and frames per second.

For each case the rlhp run is the real CLI (`python -m rlhp.train algo=A env=E seed=S ...`,
defaults + conf/tuned/A_E.yaml); the SB3 run gets the same hyperparameters, translated from
the config rlhp composes (`--cfg job`), the same number of envs and the same seed. The two run
at the same time, one torch thread each, so they share whatever else loads the machine.

Both are measured the same way at every `log_frequency` frames: `ma100`, the mean return of
the last 100 training episodes (rlhp's total_reward_ma); `recent`, the mean return of the
training episodes that ended since the previous log point; `eval`, the mean return of
`--eval-episodes` greedy episodes (rlhp's eval_return; SB3's predict(deterministic=True)), each
copy started from the same seeds in both libraries. fps is frames / training wall time,
evaluation left out (rlhp: the loop's per-interval fps, checkpoints included; SB3:
model.learn() minus the evaluations).

    python benchmarks/algos.py                         # dqn_cartpole a2c_cartpole sac_pendulum
    python benchmarks/algos.py --cases sac_halfcheetah # optional, hours on a CPU
    python benchmarks/algos.py --seeds 0 1 2           # and the median over seeds per case

Criteria (on the median over seeds): DQN CartPole-v1 eval >= 475 within 100k frames (greedy,
as rl-baselines3-zoo scores it); SAC Pendulum-v1 recent (the last 10 episodes) >= -200 within
20k frames; SAC HalfCheetah-v5 recent >= 3000 within 200k frames; A2C CartPole-v1 is reported
beside SB3 without a fixed bar. Prints markdown tables; exits 1 when a criterion fails.
"""

import argparse
import csv
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import take_machine
from omegaconf import OmegaConf

# name -> (algo, env, frames, log_frequency, criterion: (metric, target) or None)
CASES = {
    "dqn_cartpole": ("dqn", "cartpole", 100_000, 2_000, ("eval", 475.0)),
    "a2c_cartpole": ("a2c", "cartpole", 200_000, 5_000, None),
    "sac_pendulum": ("sac", "pendulum", 20_000, 2_000, ("recent", -200.0)),
    "sac_halfcheetah": ("sac", "halfcheetah", 200_000, 10_000, ("recent", 3000.0)),
}


def env_vars() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return env | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def overrides(case: str, seed: int, extra: list[str]) -> list[str]:
    algo, env, frames, log_frequency, _ = CASES[case]
    return [
        f"algo={algo}",
        f"env={env}",
        f"seed={seed}",
        f"env.max_frame={frames}",
        f"log_frequency={log_frequency}",
        *extra,
    ]


def composed(case: str, seed: int, extra: list[str]):
    cmd = [sys.executable, "-m", "rlhp.train", *overrides(case, seed, extra), "--cfg", "job"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env_vars()).stdout
    return OmegaConf.create(out)


# ---------------------------------------------------------------- stable-baselines3 worker


def sb3_model(cfg, seed: int):
    """The SB3 model with the hyperparameters of rlhp's composed config `cfg`."""
    import gymnasium as gym
    from stable_baselines3 import A2C, DQN, SAC
    from stable_baselines3.common.env_util import make_vec_env

    a, n = cfg.algo, cfg.env.num_envs
    lr = a.lr
    if a.get("lr_anneal"):  # linear to 0 over the run, as rlhp anneals it
        lr = lambda progress_remaining: a.lr * progress_remaining  # noqa: E731
    if a.get("double") or a.get("prioritized"):
        print("note: SB3's DQN has neither double Q-learning nor PER: it runs plain DQN")
    env = make_vec_env(lambda: gym.make(cfg.env.id), n_envs=n, seed=seed)
    act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "elu": torch.nn.ELU}
    policy_kwargs = {"activation_fn": act[a.hid_layers_activation]}
    common = dict(env=env, seed=seed, verbose=0, device="cpu", gamma=a.gamma, learning_rate=lr)
    if a.name in ("dqn", "sac"):
        assert a.training_frequency % n == 0, "SB3 trains every whole vector step"
        off_policy = dict(
            buffer_size=a.memory_size,
            learning_starts=a.learning_starts,
            batch_size=a.batch_size,
            tau=a.tau,
            train_freq=(a.training_frequency // n, "step"),
            gradient_steps=a.training_iter,
        )
    if a.name == "dqn":
        spec = a.explore_var_spec
        return DQN(
            "MlpPolicy",
            target_update_interval=a.target_update_frequency,  # SB3 divides by n_envs itself
            exploration_initial_eps=spec.start,
            exploration_final_eps=spec.end,
            exploration_fraction=spec.end_step / cfg.env.max_frame,
            max_grad_norm=a.clip_grad_val,
            policy_kwargs=policy_kwargs | {"net_arch": list(a.hid_layers)},
            **off_policy,
            **common,
        )
    if a.name == "a2c":
        return A2C(
            "MlpPolicy",
            n_steps=a.time_horizon,
            gae_lambda=a.lam,
            ent_coef=a.entropy_coef,
            vf_coef=a.val_loss_coef / 2,  # SB3's value loss is (V - G)^2, rlhp's 0.5 (V - G)^2
            max_grad_norm=a.clip_grad_val,
            use_rms_prop=a.optimizer == "rmsprop",
            rms_prop_eps=1e-5,
            normalize_advantage=a.normalize_advantage,
            policy_kwargs=policy_kwargs
            | {"net_arch": {"pi": list(a.hid_layers), "vf": list(a.hid_layers)}},
            **common,
        )
    if a.name == "sac":
        return SAC(
            "MlpPolicy",
            ent_coef=f"auto_{a.alpha}" if a.auto_alpha else a.alpha,
            policy_kwargs=policy_kwargs | {"net_arch": list(a.hid_layers)},
            **off_policy,
            **common,
        )
    raise ValueError(a.name)


def greedy_return(model, env_id: str, seed: int) -> float:
    """One episode of SB3's deterministic policy from `seed`, as rlhp's evaluation plays it."""
    import gymnasium as gym

    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(action)
        total, done = total + float(reward), terminated or truncated
    env.close()
    return total


def sb3_worker(cfg_path: Path, seed: int, out: Path) -> None:
    """Train SB3 on the composed config; write episodes, evaluations and wall time as JSON."""
    from stable_baselines3.common.callbacks import BaseCallback

    from rlhp.member import EVAL_SEED

    torch.set_num_threads(1)
    cfg = OmegaConf.load(cfg_path)

    class Record(BaseCallback):
        def __init__(self):
            super().__init__()
            self.episodes: list[tuple[int, float]] = []
            self.evals: list[tuple[int, float]] = []
            self.eval_s, self.next_eval = 0.0, cfg.log_frequency

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.episodes.append((self.num_timesteps, float(info["episode"]["r"])))
            if cfg.eval_episodes and self.num_timesteps >= self.next_eval:
                start, frame = time.perf_counter(), self.num_timesteps
                first = EVAL_SEED + seed + frame  # rlhp's seeds for its evaluation copies
                returns = [
                    greedy_return(self.model, cfg.env.id, first + i)
                    for i in range(cfg.eval_episodes)
                ]
                self.evals.append((frame, float(np.mean(returns))))
                self.eval_s += time.perf_counter() - start
                self.next_eval = (frame // cfg.log_frequency + 1) * cfg.log_frequency
            return True

    model = sb3_model(cfg, seed)
    record = Record()
    start = time.perf_counter()
    model.learn(total_timesteps=cfg.env.max_frame, callback=record)
    wall = time.perf_counter() - start - record.eval_s
    out.write_text(json.dumps({"episodes": record.episodes, "evals": record.evals, "wall_s": wall}))


# ---------------------------------------------------------------- both libraries' curves

METRICS = ("ma100", "recent", "eval")


def rlhp_curve(run_dir: Path) -> tuple[list[dict], float]:
    """The curve from metrics.csv and the training time (the sum over log intervals)."""
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["session"] == "0"]
    curve = [
        {
            "frame": int(r["frame"]),
            "ma100": float(r["total_reward_ma"]),
            "recent": float(r["episode_return"] or "nan"),
            "eval": float(r.get("eval_return") or "nan"),
        }
        for r in rows
    ]
    frames = [0] + [p["frame"] for p in curve]
    pairs = zip(itertools.pairwise(frames), rows, strict=True)
    train_s = sum((b - a) / float(r["fps"]) for (a, b), r in pairs)
    return curve, train_s


def sb3_curve(data: dict, frames: int, log_frequency: int) -> list[dict]:
    episodes, evals = data["episodes"], dict(data["evals"])
    curve = []
    for point in range(log_frequency, frames + 1, log_frequency):
        done = [r for f, r in episodes if f <= point]
        recent = [r for f, r in episodes if point - log_frequency < f <= point]
        curve.append(
            {
                "frame": point,
                "ma100": float(np.mean(done[-100:])) if done else math.nan,
                "recent": float(np.mean(recent)) if recent else math.nan,
                "eval": evals.get(point, math.nan),
            }
        )
    return curve


def first_reach(curve: list[dict], metric: str, target: float, frames: int) -> int | None:
    return next((p["frame"] for p in curve if p["frame"] <= frames and p[metric] >= target), None)


def at(curve: list[dict], frame: int, metric: str) -> float:
    return next((p[metric] for p in curve if p["frame"] >= frame), math.nan)


def run_case(case: str, seed: int, out: Path, extra: list[str]) -> dict:
    cfg = composed(case, seed, extra)
    frames, log_frequency = cfg.env.max_frame, cfg.log_frequency  # as --override leaves them
    cfg_path = out / f"{case}_s{seed}.yaml"
    OmegaConf.save(cfg, cfg_path)
    run_dir = out / f"{case}_s{seed}_rlhp"
    sb3_json = out / f"{case}_s{seed}_sb3.json"
    rlhp_cmd = [
        sys.executable, "-m", "rlhp.train", *overrides(case, seed, extra),
        f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    sb3_cmd = [
        sys.executable, __file__, "--sb3-worker", str(cfg_path), "--seed", str(seed),
        "--sb3-out", str(sb3_json),
    ]  # fmt: skip
    with (
        open(out / f"{case}_s{seed}_rlhp.log", "w") as a,
        open(out / f"{case}_s{seed}_sb3.log", "w") as b,
    ):
        procs = [
            subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env_vars())
            for cmd, log in ((rlhp_cmd, a), (sb3_cmd, b))
        ]
        codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"{case} seed {seed}: exit codes {codes}; logs in {out}")
    rlhp, rlhp_s = rlhp_curve(run_dir)
    sb3_data = json.loads(sb3_json.read_text())
    return {
        "rlhp": rlhp,
        "sb3": sb3_curve(sb3_data, frames, log_frequency),
        "frames": frames,
        "sb3_plain_dqn": cfg.algo.name == "dqn" and (cfg.algo.double or cfg.algo.prioritized),
        "rlhp_fps": rlhp[-1]["frame"] / rlhp_s,
        "sb3_fps": frames / sb3_data["wall_s"],
    }


def fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1f}"


def row(case: str, r: dict, lib: str) -> dict:
    """One table row's figures for one library's run."""
    curve, frames, criterion = r[lib], r["frames"], CASES[case][4]
    hit = first_reach(curve, *criterion, frames) if criterion else None
    return {
        "reach": math.inf if hit is None else hit,
        **{f"{m}_half": at(curve, frames // 2, m) for m in METRICS},
        **{f"{m}_final": curve[-1][m] for m in METRICS},
        "fps": r[f"{lib}_fps"],
    }


def print_row(case: str, seed: str, frames: int, lib: str, x: dict, ratio: float | None) -> None:
    reach = "-"
    if CASES[case][4]:
        reach = "never" if math.isinf(x["reach"]) else f"{x['reach']:,.0f}"
    print(
        f"| {case} | {seed} | {frames:,} | {lib} | {reach} "
        f"| {fmt(x['ma100_half'])} | {fmt(x['ma100_final'])} | {fmt(x['recent_final'])} "
        f"| {fmt(x['eval_half'])} | {fmt(x['eval_final'])} | {x['fps']:.0f} "
        f"| {f'{ratio:.2f}' if ratio is not None else ''} |",
        flush=True,
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", nargs="*", default=["dqn_cartpole", "a2c_cartpole", "sac_pendulum"])
    p.add_argument("--seeds", type=int, nargs="*", default=[0])
    p.add_argument("--eval-episodes", type=int, default=10, help="greedy episodes a log point")
    p.add_argument("--override", nargs="*", default=[], help="extra rlhp overrides (both runs)")
    p.add_argument("--out", type=Path, help="run directories here (default: a temp dir)")
    p.add_argument("--sb3-worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sb3-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sb3_worker:
        sb3_worker(args.sb3_worker, args.seed, args.sb3_out)
        return 0
    import stable_baselines3

    out = args.out or Path(tempfile.mkdtemp(prefix="rlhp_algos_"))
    out.mkdir(parents=True, exist_ok=True)
    extra = [f"eval_episodes={args.eval_episodes}", *args.override]
    print("## DQN, A2C, SAC beside stable-baselines3 (`benchmarks/algos.py`)\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    take_machine(f"stable-baselines3 {stable_baselines3.__version__}")
    print(f"- runs in {out}\n")
    print(
        "| case | seed | frames | lib | first frame at target | ma100 at half | ma100 final "
        "| recent final | eval at half | eval final | fps | fps rlhp/SB3 |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok, notes = True, set()
    for case in args.cases:
        rows: dict[str, list[dict]] = {"rlhp": [], "sb3": []}
        ratios = []  # rlhp / SB3 fps of each side-by-side pair
        for seed in args.seeds:
            r = run_case(case, seed, out, extra)
            if r["sb3_plain_dqn"]:
                notes.add(f"{case}: SB3's DQN has no double Q-learning or PER; it runs plain DQN.")
            ratios.append(r["rlhp_fps"] / r["sb3_fps"])
            for lib in rows:
                rows[lib].append(row(case, r, lib))
                ratio = ratios[-1] if lib == "rlhp" else None
                print_row(case, str(seed), r["frames"], lib, rows[lib][-1], ratio)
        if len(args.seeds) > 1:
            for lib, xs in rows.items():
                median = {k: float(np.median([x[k] for x in xs])) for k in xs[0]}
                ratio = float(np.median(ratios)) if lib == "rlhp" else None
                print_row(case, "median", r["frames"], lib, median, ratio)
        if CASES[case][4]:
            reached = sorted(x["reach"] for x in rows["rlhp"])
            ok &= not math.isinf(reached[(len(reached) - 1) // 2])  # the median seed reaches it
    if notes:
        print("\n" + "\n".join(sorted(notes)))
    targets = [f"{c} {CASES[c][4][0]} >= {CASES[c][4][1]:g}" for c in args.cases if CASES[c][4]]
    if targets:
        verdict = "all met" if ok else "NOT all met"
        print(f"\nTargets (median seed): {', '.join(targets)}; {verdict} by rlhp.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
