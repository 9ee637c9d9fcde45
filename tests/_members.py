"""What the engine's tests share, every algorithm alike: composing configs, running populations
and comparing their members' runs with the same configs trained alone, killing a run once its
sessions have checkpointed, and reading what ASHA decided in a batched search."""

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from sweep._cli import trial_dirs

from rlhp.population import Member, Population

CONF = Path(__file__).resolve().parents[1] / "conf"
CPU = torch.device("cpu")


TINY = [  # PPO on CartPole in 128-frame rollouts (8 envs x 16 steps): a log point at each
    "env.max_frame=256",
    "log_frequency=128",
    "algo.time_horizon=16",
    "algo.minibatch_size=64",
    "algo.training_epoch=2",
    "device=cpu",
]


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF)):
        return compose("config", overrides=list(overrides))


def params(run_dir: Path, net: str = "model", session: int = 0) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / f"model_session{session}.pt")[net]["params"]


def assert_same_run(a: Path, b: Path, losses: list[str], net: str = "model") -> None:
    """Two run dirs hold the same training: the logged returns and `losses`, and the final
    weights of `net`."""
    ma, mb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    cols = ["frame", "total_reward_ma", *losses]
    np.testing.assert_allclose(ma[cols].to_numpy(), mb[cols].to_numpy(), rtol=1e-4, atol=1e-5)
    pa, pb = params(a, net), params(b, net)
    assert pa.keys() == pb.keys()
    for name in pa:
        torch.testing.assert_close(pa[name], pb[name], atol=1e-5, rtol=1e-4)


def run_with_refill(cfgs: list[DictConfig], tmp_path: Path) -> tuple[Member, list[Member]]:
    """Members of cfgs[0] ("stopped", at its first log point) and cfgs[1] ("m1") with a member of
    cfgs[2] ("refill") waiting for a free slot; then cfgs[2] ("alone2") and cfgs[1] ("alone1")
    trained alone. Returns the stopped member and the members in the order they finished."""
    stopped = Member(cfgs[0], tmp_path / "stopped", reporter=lambda frame, value: False)
    queue = [Member(cfgs[2], tmp_path / "refill")]
    population = Population(
        [stopped, Member(cfgs[1], tmp_path / "m1")],
        CPU,
        refill=lambda: queue.pop() if queue else None,
    )
    finished = population.run()
    Population([Member(cfgs[2], tmp_path / "alone2")], CPU).run()
    Population([Member(cfgs[1], tmp_path / "alone1")], CPU).run()
    return stopped, finished


def frame_of(path: Path) -> int:
    try:
        return torch.load(path, weights_only=False)["frame"]
    except (EOFError, RuntimeError):  # caught mid-replace
        return 0


def kill_once_checkpointed(proc: subprocess.Popen, ckpts: list[Path], frame: int) -> None:
    """SIGKILL `proc` once every checkpoint in `ckpts` is at `frame` or later (120 s at most)."""
    try:
        deadline = time.monotonic() + 120
        while not all(p.exists() and frame_of(p) >= frame for p in ckpts):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def decisions(sweep_dir: Path) -> list[dict]:
    path = sweep_dir / "asha" / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_asha_judged_the_mean_of_two_sessions(sweep_dir: Path) -> None:
    """Each report ASHA judged was the mean total_reward_ma of its trial's two sessions at that
    frame, and each trial's sessions stopped or finished together."""
    reports = [d for d in decisions(sweep_dir) if d["value"] == d["value"]]  # not NaN
    assert reports
    for d in reports:
        df = pd.read_csv(sweep_dir / d["trial"] / "metrics.csv")
        at = df[df.frame == d["frame"]]
        assert sorted(at.session) == [0, 1]
        assert d["value"] == pytest.approx(at.total_reward_ma.mean())
    for n in trial_dirs(sweep_dir):
        ends = pd.read_csv(sweep_dir / str(n) / "metrics.csv").groupby("session").frame.max()
        assert ends[0] == ends[1]  # stopped or finished together
