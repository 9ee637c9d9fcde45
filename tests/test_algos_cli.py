"""DQN, SAC, A2C and REINFORCE through the real `python -m rlhp.train` CLI, with tiny budgets:
runs that finish with a finite objective, algo/env pairs refused in one line, an off-policy
run resumed from its checkpoint with the replay memory, the tuned configs and the search
presets (dry runs)."""

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose as compose_config
from hydra import initialize_config_dir
from omegaconf import OmegaConf
from sweep._cli import cli_env

CONF = Path(__file__).resolve().parents[1] / "conf"

# name -> (overrides, loss columns, whether an episode ends within the budget); one run per
# algorithm (continuous A2C and REINFORCE are covered in tests/algo)
RUNS = {
    # tuned (one env, 256-frame training steps from frame 1000) with double DQN and PER
    "dqn_cartpole": (
        [
            "algo=dqn",
            "env=cartpole",
            "env.max_frame=1536",
            "algo.double=true",
            "algo.prioritized=true",
            "algo.training_iter=16",
        ],
        ["q_loss"],
        True,
    ),
    # Nature CNN, uint8 frame stacks in a 2k-frame replay; slow on CPU: no episode ends
    "dqn_breakout": (
        [
            "algo=dqn",
            "env=breakout",
            "env.num_envs=4",
            "env.max_frame=512",
            "algo.memory_size=2000",
            "algo.learning_starts=256",
            "algo.training_frequency=16",
            "algo.batch_size=8",
        ],
        ["q_loss"],
        False,
    ),
    # one env (tuned), 200-step episodes; small nets to keep it quick
    "sac_pendulum": (
        [
            "algo=sac",
            "env=pendulum",
            "env.max_frame=512",
            "algo.hid_layers=[32,32]",
            "algo.batch_size=32",
            "algo.training_frequency=4",
        ],
        ["q_loss", "policy_loss", "alpha"],
        True,
    ),
    "a2c_cartpole": (["algo=a2c", "env=cartpole", "env.max_frame=2048"], ["value_loss"], True),
    "reinforce_cartpole": (
        ["algo=reinforce", "env=cartpole", "env.max_frame=2048"],
        ["policy_loss", "value_loss"],
        True,
    ),
}

PRESETS = ["dqn_cartpole", "dqn_breakout", "a2c_cartpole", "a2c_lunar"]
PRESETS += ["sac_pendulum", "sac_halfcheetah", "ppo_acrobot"]


def check_ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr


def load_result(run_dir: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(run_dir / "result.yaml"))


def checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "session0.pt", weights_only=False)


@pytest.mark.parametrize("name", list(RUNS))
def test_trains_through_the_cli(name, rlhp_cli, tmp_path):
    overrides, losses, episodes_end = RUNS[name]
    run_dir = tmp_path / "run"
    proc = rlhp_cli(*overrides, "log_frequency=256", run_dir=run_dir, timeout=240)
    check_ok(proc)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    df = pd.read_csv(run_dir / "metrics.csv")
    assert df.frame.iloc[-1] >= cfg.env.max_frame
    trained = df.dropna(subset=losses)
    assert len(trained), f"{name} never trained"
    assert np.isfinite(trained[losses].to_numpy()).all()
    result = load_result(run_dir)
    assert result["state"] == "complete"
    assert math.isfinite(result["objective"]) == episodes_end
    if episodes_end:
        assert result["objective"] == pytest.approx(df.total_reward_ma.iloc[-1])
    state = checkpoint(run_dir)
    assert state["frame"] == df.frame.iloc[-1]
    if "memory" in state["agent"]:  # off-policy: every frame is in replay (up to its size)
        memory, num_envs = state["agent"]["memory"], cfg.env.num_envs
        held = min(memory["steps"], cfg.algo.memory_size // num_envs) * num_envs
        assert held == min(state["frame"], cfg.algo.memory_size // num_envs * num_envs)
        if cfg.env.net == "cnn":  # each 84x84 frame once, not 4-frame stacks
            assert memory["obs"].dtype == torch.uint8
            assert memory["obs"].shape[1:] == (num_envs, 84, 84)


@pytest.mark.parametrize(
    "algo, env, needs", [("dqn", "pendulum", "Discrete"), ("sac", "cartpole", "Box")]
)
def test_algo_that_cannot_act_in_the_env_fails_in_one_line(algo, env, needs, rlhp_cli, tmp_path):
    proc = rlhp_cli(f"algo={algo}", f"env={env}", run_dir=tmp_path / "run", timeout=60)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [lines[-1]] and lines[-1].startswith("rlhp: error: "), proc.stderr
    assert f"algo {algo} needs {needs} actions" in lines[-1]
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_off_policy_run_resumes_with_its_replay_memory(rlhp_cli, tmp_path):
    run_dir = tmp_path / "run"
    common = ["algo=dqn", "env=cartpole", "env.num_envs=2", "log_frequency=500"]
    common += ["algo.learning_starts=200", "algo.training_frequency=100", "algo.training_iter=8"]
    check_ok(rlhp_cli(*common, "env.max_frame=1000", run_dir=run_dir))
    saved = checkpoint(run_dir)
    memory = saved["agent"]["memory"]
    assert saved["frame"] == 1000 and memory["steps"] * 2 == 1000

    check_ok(rlhp_cli(*common, "env.max_frame=2000", run_dir=run_dir))
    df = pd.read_csv(run_dir / "metrics.csv")
    assert df.frame.tolist() == [500, 1000, 1500, 2000]
    final = checkpoint(run_dir)
    assert final["frame"] == 2000
    again = final["agent"]["memory"]
    assert again["steps"] * 2 == 2000  # 1000 restored + 1000 new, not a fresh memory of 1000
    for key in ("obs", "actions", "rewards", "terminated"):
        torch.testing.assert_close(again[key][:500], memory[key][:500], msg=key)
    # the episodes running at the checkpoint were cut there, keeping their next obs
    for env in range(2):
        if not (memory["terminated"][499, env] or memory["cut"][499, env]):
            assert again["cut"][499, env]
            torch.testing.assert_close(again["final"][499 * 2 + env], memory["obs"][500, env])
    # the optimiser went on from its saved state: one Adam step per gradient step
    steps = lambda s: s["agent"]["optimizer"]["steps"].item()  # noqa: E731
    assert steps(final) == steps(saved) + (2000 // 100 - 1000 // 100) * 8


def compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF)):
        return compose_config("config", overrides=list(overrides))


def test_tuned_configs_are_applied():
    cfg = compose("algo=dqn", "env=cartpole")
    assert cfg.algo.lr == 2.3e-3 and cfg.algo.training_iter == 128 and cfg.env.num_envs == 1
    cfg = compose("algo=sac", "env=halfcheetah")  # PPO's env transforms are off
    assert not cfg.env.obs_norm and not cfg.env.reward_scale and cfg.algo.learning_starts == 10000
    cfg = compose("algo=sac", "env=pendulum", "env.num_envs=2")  # the command line wins
    assert cfg.env.num_envs == 2 and cfg.algo.lr == 1e-3 and not cfg.env.obs_norm
    cfg = compose("algo=dqn", "env=breakout")
    assert cfg.algo.hid_layers == [512] and cfg.algo.memory_size == 100000
    cfg = compose("algo=a2c", "env=lunar")
    assert cfg.algo.gamma == 0.995 and cfg.algo.lr_anneal
    cfg = compose("algo=reinforce", "env=cartpole")  # no tuned file: the algo's defaults
    assert cfg.algo == OmegaConf.load(CONF / "algo" / "reinforce.yaml")


def test_search_presets_dry_run(tmp_path):
    """`-m +search=NAME hydra.sweeper.dry_run=true hydra.sweeper.n_trials=3` for every preset
    (in parallel: most of each run is start-up)."""
    cmd = [sys.executable, "-m", "rlhp.train", "-m", "hydra.sweeper.dry_run=true"]
    cmd.append("hydra.sweeper.n_trials=3")
    procs = {
        name: subprocess.Popen(
            [*cmd, f"+search={name}"],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in PRESETS
    }
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, stderr[-2000:])
        preset = OmegaConf.load(CONF / "search" / f"{name}.yaml")
        assert preset.hydra.sweep.dir == f"multirun/{name}"
        assert preset.defaults[0] == {"override /algo": name.split("_")[0]}
        params = list(preset.hydra.sweeper.params)
        trials = [ln for ln in stdout.splitlines() if re.match(r"trial \d+: ", ln)]
        assert len(trials) == 3, (name, stdout)
        for line in trials:
            assert [kv.split("=")[0] for kv in line.split(": ", 1)[1].split()] == params, name
    assert not (tmp_path / "multirun").exists()  # a dry run trains nothing
