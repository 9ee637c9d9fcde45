"""PPO CartPole training speed: rlhp vs stable-baselines3 with the same hyperparameters.

Both train CartPole-v1 from the composed rlhp config (`env=cartpole`, i.e. conf/algo/ppo.yaml +
conf/tuned/ppo_cartpole.yaml): 8 envs, n_steps = time_horizon, batch_size = minibatch_size,
n_epochs = training_epoch, lr (linearly annealed in both), gamma, gae_lambda = lam, clip_range =
clip_eps (annealed when clip_eps_anneal), clip_range_vf = clip_eps when clip_vloss, ent_coef,
vf_coef, max_grad_norm, advantage normalisation, Adam eps 1e-5, separate [64, 64] tanh pi/vf nets
with orthogonal init, CPU, 1 torch thread, both pinned to the same core (os.sched_setaffinity; the
first this process may use). The envs differ: rlhp steps gymnasium's numpy-batched
CartPoleVectorEnv (one numpy step for the 8 copies), SB3 8 Python CartPoleEnv in a DummyVecEnv,
so part of the ratio is the env. Each repetition runs in a fresh subprocess that times only
training (rlhp: `Population.run()` of one member, built from hydra's compose API; SB3:
`PPO.learn()`), so start-up, imports and model construction are excluded for both. Runs alternate
rlhp/SB3 (ABBA order) in one invocation; the figures are medians over repetitions of wall-clock and
CPU-time frames/s and the ratio rlhp/SB3 of the medians.

    python benchmarks/ppo_speed.py [--frames 50000] [--reps 3] [--profile]

`--profile` also runs rlhp's Population.run() once under cProfile and prints the hot spots
(`--reps 0 --profile`: only that).

"""

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _machine import take_machine

ENVS = {
    "rlhp": "gymnasium CartPoleVectorEnv (numpy-batched, 8 copies)",
    "sb3": "DummyVecEnv of 8 Python CartPoleEnv",
}
CORE = min(os.sched_getaffinity(0))


def compose_cfg(frames: int, seed: int):
    from hydra import compose, initialize_config_dir

    from rlhp.train import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR):
        return compose(
            "config",
            overrides=["algo=ppo", "env=cartpole", f"env.max_frame={frames}", f"seed={seed}"],
        )


def run_rlhp(frames: int, seed: int, profiler: cProfile.Profile | None = None) -> dict:
    from rlhp.population import Member, Population

    cfg = compose_cfg(frames, seed)
    torch.set_num_threads(cfg.torch_threads)
    with tempfile.TemporaryDirectory() as run_dir:
        member = Member(cfg, Path(run_dir))
        population = Population([member], torch.device("cpu"))  # a single run: K = 1
        if profiler is not None:
            profiler.enable()
        start, cpu = time.perf_counter(), time.process_time()
        population.run()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
    return {
        "frames": member.frame,
        "wall_s": wall,
        "cpu_s": cpu,
        "final": member.summary()["final"],
    }


def run_sb3(frames: int, seed: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from torch import nn

    cfg = compose_cfg(frames, seed)
    a = cfg.algo
    torch.set_num_threads(cfg.torch_threads)
    env = make_vec_env(cfg.env.id, n_envs=cfg.env.num_envs, seed=seed)
    # SB3 schedules take progress_remaining (1 -> 0), as rlhp's linear annealing
    lr = (lambda p: a.lr * p) if a.lr_anneal else a.lr
    clip = (lambda p: a.clip_eps * p) if a.clip_eps_anneal else a.clip_eps
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=lr,
        n_steps=a.time_horizon,
        batch_size=a.minibatch_size,
        n_epochs=a.training_epoch,
        gamma=a.gamma,
        gae_lambda=a.lam,
        clip_range=clip,
        clip_range_vf=a.clip_eps if a.clip_vloss else None,
        normalize_advantage=a.normalize_advantage,
        ent_coef=a.entropy_coef,
        vf_coef=a.val_loss_coef,
        max_grad_norm=a.clip_grad_val,
        policy_kwargs=dict(
            net_arch=dict(pi=list(a.hid_layers), vf=list(a.hid_layers)),
            activation_fn={"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}[
                a.hid_layers_activation
            ],
            ortho_init=True,
        ),
        seed=seed,
        device="cpu",
        verbose=0,
    )
    start, cpu = time.perf_counter(), time.process_time()
    model.learn(total_timesteps=frames)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    rets = [ep["r"] for ep in model.ep_info_buffer]
    final = sum(rets) / len(rets) if rets else float("nan")
    env.close()
    return {"frames": model.num_timesteps, "wall_s": wall, "cpu_s": cpu, "final": final}


def worker(which: str, frames: int, seed: int) -> dict:
    """One timed run in a fresh process; returns frames, wall_s, fps, final."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        which,
        "--frames",
        str(frames),
        "--seed",
        str(seed),
        "--core",
        str(CORE),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["fps"] = result["frames"] / result["wall_s"]
    result["cpu_fps"] = result["frames"] / result["cpu_s"]
    return result


def profile_rlhp(frames: int, seed: int, top: int) -> str:
    prof = cProfile.Profile()
    result = run_rlhp(frames, seed, prof)  # profiles Population.run() only
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    head = f"rlhp Population.run() under cProfile: {result['frames']} frames, "
    head += f"{result['wall_s']:.1f} s\n"
    return head + buf.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=50_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="also profile rlhp with cProfile")
    p.add_argument("--worker", choices=["rlhp", "sb3"], help=argparse.SUPPRESS)
    p.add_argument("--core", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        os.sched_setaffinity(0, {args.core})
        run = run_rlhp if args.worker == "rlhp" else run_sb3
        print(json.dumps(run(args.frames, args.seed)))
        return 0

    import stable_baselines3

    print("## PPO CartPole speed, rlhp vs stable-baselines3 (`benchmarks/ppo_speed.py`)\n")
    print(f"- command: `python {' '.join(sys.argv)}`")
    take_machine(f"stable-baselines3 {stable_baselines3.__version__}")
    print(
        f"- both sides pinned to core {CORE}, 1 torch thread; envs: rlhp {ENVS['rlhp']}, "
        f"SB3 {ENVS['sb3']}"
    )
    a = compose_cfg(args.frames, args.seed).algo
    print(
        f"- hyperparameters (both): n_envs 8, n_steps {a.time_horizon}, batch {a.minibatch_size},"
        f" epochs {a.training_epoch}, lr {a.lr} (anneal {a.lr_anneal}), gamma {a.gamma},"
        f" lam {a.lam}, clip {a.clip_eps} (value clip {a.clip_vloss}), ent {a.entropy_coef},"
        f" vf {a.val_loss_coef}, max_grad_norm {a.clip_grad_val}, net {list(a.hid_layers)}"
        f" {a.hid_layers_activation} separate, 1 torch thread, CPU"
    )
    if args.reps:
        print(
            f"- {args.reps} alternating repetitions (ABBA order) of {args.frames:,} frames each\n"
        )
        print(
            "| rep | impl | env | frames | wall s | frames/s (wall) | CPU s | frames/s (CPU) "
            "| final MA |"
        )
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|")
        fps = {key: {"rlhp": [], "sb3": []} for key in ("fps", "cpu_fps")}
        for rep in range(args.reps):
            order = ["rlhp", "sb3"] if rep % 2 == 0 else ["sb3", "rlhp"]
            for which in order:
                r = worker(which, args.frames, args.seed + rep)
                for key in fps:
                    fps[key][which].append(r[key])
                print(
                    f"| {rep} | {which} | {ENVS[which]} | {r['frames']:,} | {r['wall_s']:.1f} "
                    f"| {r['fps']:.0f} "
                    f"| {r['cpu_s']:.1f} | {r['cpu_fps']:.0f} | {r['final']:.1f} |",
                    flush=True,
                )
        print()
        for key, label in (("fps", "wall-clock"), ("cpu_fps", "CPU-time")):
            med = {k: statistics.median(v) for k, v in fps[key].items()}
            pair = [x / y for x, y in zip(fps[key]["rlhp"], fps[key]["sb3"], strict=True)]
            print(
                f"- **{label} frames/s, median: rlhp {med['rlhp']:.0f}, SB3 {med['sb3']:.0f}; "
                f"ratio rlhp/SB3 = {med['rlhp'] / med['sb3']:.2f}** "
                f"(per-repetition {', '.join(f'{x:.2f}' for x in pair)})"
            )
        print(
            "\nCPU time (time.process_time of the training call, 1 torch thread) is what each run"
            " itself consumed; it is much less sensitive than wall time to other jobs on the box.\n"
        )
    if args.profile:
        print("```" if args.reps else "\n```")
        print(profile_rlhp(args.frames, args.seed, 30).rstrip())
        print("```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
