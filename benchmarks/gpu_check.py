"""The prepared GPU check (under 5 minutes on one GPU): run it whenever a CUDA machine is at hand
and write its figures in BENCHMARKS.md.

1. PPO CartPole, K = 1024 members with `device=cuda`: total training frames/s and peak GPU memory.
2. Member independence on CUDA: member 1 of a 3-member population equals the same config trained
   alone (weights and logged losses after 2,048 frames).
3. DQN CartPole, K = 64 members on CUDA: total frames/s and peak GPU memory.

    python benchmarks/gpu_check.py            # prints a markdown block
    python benchmarks/gpu_check.py --smoke    # the same steps, tiny, on the CPU
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _machine import take_machine

ROOT = Path(__file__).resolve().parents[1]
SMOKE = "--smoke" in sys.argv  # the same steps on the CPU, tiny: checks the script itself
DEVICE = torch.device("cpu" if SMOKE else "cuda")


def compose(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return compose("config", overrides=[*overrides, f"device={DEVICE.type}"])


def throughput(algo: str, k: int, frames: int, extra: list[str]) -> tuple[float, float]:
    """Total training frames/s of K members (lr varied per member) and peak GPU memory (GiB)."""
    from rlhp.member import Member
    from rlhp.population import Population

    rng = np.random.default_rng(0)
    base = [f"algo={algo}", "env=cartpole", f"env.max_frame={frames}", f"log_frequency={frames}"]
    with tempfile.TemporaryDirectory() as tmp:
        members = [
            Member(compose(*base, *extra, f"seed={i}", f"algo.lr={10 ** rng.uniform(-4, -3):.3g}"),
                   Path(tmp) / str(i))
            for i in range(k)
        ]  # fmt: skip
        population = Population(members, DEVICE)
        sync()
        start = time.perf_counter()
        population.run()
        sync()
        wall = time.perf_counter() - start
    peak = 0.0 if SMOKE else torch.cuda.max_memory_allocated() / 2**30
    return sum(m.frame for m in members) / wall, peak


def sync() -> None:
    if not SMOKE:
        torch.cuda.synchronize()


def independence() -> float:
    """Largest difference between member 1 of a population and the same config alone (CUDA)."""
    from rlhp.member import Member
    from rlhp.population import Population

    base = ["algo=ppo", "env=cartpole", "env.max_frame=2048", "log_frequency=512"]
    cfgs = [
        compose(*base, f"seed={s}", f"algo.lr={lr}") for s, lr in ((0, 1e-3), (5, 3e-4), (7, 3e-3))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        Population([Member(c, tmp / f"m{i}") for i, c in enumerate(cfgs)], DEVICE).run()
        Population([Member(cfgs[1], tmp / "alone")], DEVICE).run()
        a, b = (
            torch.load(tmp / d / "model_session0.pt")["model"]["params"] for d in ("m1", "alone")
        )
        diff = max((a[n] - b[n]).abs().max().item() for n in a)
        la, lb = (pd.read_csv(tmp / d / "metrics.csv") for d in ("m1", "alone"))
        diff = max(diff, float(np.abs(la.policy_loss - lb.policy_loss).max()))
    return diff


def main() -> int:
    if not SMOKE and not torch.cuda.is_available():
        print("no CUDA device: nothing measured (--smoke runs the steps tiny on the CPU)")
        return 1
    name = "CPU smoke run" if SMOKE else torch.cuda.get_device_name()
    print("## GPU check (`benchmarks/gpu_check.py`)\n")
    take_machine(name)
    print()
    fps, mem = throughput("ppo", 4 if SMOKE else 1024, 1024 if SMOKE else 8192, [])
    print(f"- PPO CartPole K = 1024: {fps:,.0f} frames/s in total, peak GPU memory {mem:.2f} GiB")
    diff = independence()
    print(f"- member independence on CUDA (PPO, 3 members vs alone): max difference {diff:.2e}")
    dqn = ["algo.learning_starts=1000", "algo.training_frequency=64", "algo.memory_size=20000"]
    fps, mem = throughput("dqn", 2 if SMOKE else 64, 1500 if SMOKE else 5000, dqn)
    print(f"- DQN CartPole K = 64: {fps:,.0f} frames/s in total, peak GPU memory {mem:.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
