"""Reward weights searched in stages (rlhp.stage, VBot's staged AutoML): env.kwargs shape the
training copies only, a search of them must rank on the unshaped eval return, and a staged
search on Hopper run end to end through the CLI (a tiny budget of frames)."""

import shlex
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from sweep._cli import cli_env

from rlhp import record
from rlhp.config import check, shaped_objective
from rlhp.env import VecEnv
from rlhp.errors import ConfigError
from rlhp.stage import hydra_value, plan, share, stage_command
from rlhp.train import CONF_DIR

WEIGHTS = {"forward_reward_weight": 2.0, "ctrl_cost_weight": 1.0, "healthy_reward": 0.25}
DEFAULTS = {"forward_reward_weight": 1.0, "ctrl_cost_weight": 1e-3, "healthy_reward": 1.0}
TINY = [
    "env.max_frame=1000",
    "log_frequency=500",
    "eval_episodes=2",
    "algo.time_horizon=256",
    "meta.search_scheduler=null",
    "hydra.sweeper.max_concurrent=2",
]


def composed(*overrides: str):
    with initialize_config_dir(CONF_DIR):
        return compose("config", list(overrides))


def test_training_copies_take_env_kwargs_evaluation_copies_play_the_env_reward():
    kwargs = [f"+env.kwargs.{k}={v}" for k, v in WEIGHTS.items()]
    cfg = composed("env=hopper", "eval_episodes=1", "env.reward_scale=false", *kwargs)
    train, evaluate = VecEnv(cfg, 0.99, training=True), VecEnv(cfg, 0.99, training=False)
    shaped, plain = gym.make("Hopper-v5", **WEIGHTS), gym.make("Hopper-v5")
    for env in (train, evaluate):
        env.reset(seed=3)
    shaped.reset(seed=3)
    plain.reset(seed=3)
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 1, 3)).astype(np.float32)
    for action in actions:
        reward_train = train.step(action)[1]
        reward_eval = evaluate.step(action)[1]
        assert reward_train[0] == pytest.approx(shaped.step(action[0])[1], rel=1e-6)
        assert reward_eval[0] == pytest.approx(plain.step(action[0])[1], rel=1e-6)
        assert reward_train[0] != pytest.approx(reward_eval[0], rel=1e-3)


def test_a_search_of_env_kwargs_must_rank_on_the_eval_return():
    searched = ["algo.lr", "env.kwargs.ctrl_cost_weight"]
    assert shaped_objective(["algo.lr"], "final") is None
    assert shaped_objective(searched, "eval") is None
    for objective in ("final", "auc"):
        assert "objective=eval" in shaped_objective(searched, objective)
    cfg = composed("env=hopper", "+env.kwargs.ctrl_cost_weight=0.01")
    with pytest.raises(ConfigError, match="env.kwargs.ctrl_cost_weight shapes"):
        check(cfg, searched=searched)
    check(composed("env=hopper", "objective=eval", "eval_episodes=1"), searched=searched)
    with pytest.raises(ConfigError, match="env.kwargs of Hopper-v5: .*'ctrl_weight'"):
        check(composed("env=hopper", "+env.kwargs.ctrl_weight=0.01"))


@pytest.mark.parametrize(
    "value", [3e-4, 1e-05, 3, 0.0, True, None, "tanh", "it's", [64, 64], {"algo.lr": 1e-3}]
)
def test_hydra_value_reads_back_as_the_value(value):
    override = OverridesParser.create().parse_override(f"x={hydra_value(value)}")
    assert override.value() == value


def test_stages_alternate_and_share_what_is_left_of_the_budget():
    assert plan(2) == ["hp", "reward", "hp", "reward"]
    assert share(12, 2 * 3600, 4) == pytest.approx(2.5)
    assert share(1, 4000, 1) < 0
    assert share(None, 5.0, 2) is None


def test_a_stage_fixes_the_other_kind_and_starts_from_the_best_so_far():
    entry = {"fixed": {"algo.lr": 1e-3}, "prior": {"env.kwargs.healthy_reward": 0.5}}
    user = ["+search=ppo_hopper_reward", "algo.lr=tag(log, interval(1e-5, 1e-3))", "seed=4"]
    cmd = stage_command(user, Path("st/stage2_reward"), 5, 0.25, entry)
    assert cmd[:4] == [sys.executable, "-m", "rlhp.train", "-m"]
    assert cmd[4:] == [
        "+search=ppo_hopper_reward",
        "seed=4",
        "algo.lr=0.001",
        "hydra.sweep.dir=st/stage2_reward",
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.budget_hours=0.25",
        "++hydra.sweeper.prior_values={env.kwargs.healthy_reward:0.5}",
    ]


# -- the CLI: python -m rlhp.stage, end to end on Hopper


def stage_cli(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rlhp.stage", *args]
    return subprocess.run(
        cmd, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The README's command: 2 hyperparameter trials, then 1 reward-weight generation of 2,
    under --budget-hours 0.5."""
    cwd = tmp_path_factory.mktemp("stage")
    args = ["+search=ppo_hopper_reward", "--budget-hours", "0.5", "--hp-trials", "2"]
    args += ["--reward-generations", "1", *TINY, f"hydra.sweep.dir={cwd / 'st'}"]
    return cwd / "st", stage_cli(cwd, *args)


def trial_cfg(sub_dir: Path, number: int):
    return OmegaConf.load(record.trial_dir(sub_dir, number) / ".hydra" / "config.yaml")


def test_the_stages_run_in_order_each_from_the_previous_best(staged):
    stage_dir, proc = staged
    assert proc.returncode == 0, proc.stderr[-3000:]
    progress = OmegaConf.to_object(OmegaConf.load(stage_dir / "stages.yaml"))
    hp, reward = progress["stages"]
    assert [hp["kind"], reward["kind"]] == ["hp", "reward"]
    assert [hp["state"], reward["state"]] == ["complete", "complete"]
    assert [hp["trials"]["complete"], reward["trials"]["complete"]] == [2, 2]
    assert "hydra.sweeper.budget_hours=0.25 " in hp["command"] + " "  # half of the budget
    assert "hydra.sweeper.budget_hours=" in reward["command"]
    first, second = stage_dir / hp["dir"], stage_dir / reward["dir"]
    ended = max((record.trial_dir(first, n) / record.RESULT).stat().st_mtime for n in (0, 1))
    config = [record.trial_dir(second, n) / ".hydra" / "config.yaml" for n in (0, 1)]
    started = min(path.stat().st_mtime for path in config)
    assert ended <= started
    # stage 0: the weights fixed at the preset's (Hopper's defaults), hyperparameters searched
    assert reward["fixed"] == hp["best"]["params"]
    for n in (0, 1):
        assert OmegaConf.to_object(trial_cfg(first, n).env.kwargs) == DEFAULTS
        cfg = trial_cfg(second, n)
        assert {k: OmegaConf.select(cfg, k) for k in reward["fixed"]} == reward["fixed"]
    assert trial_cfg(first, 0).algo != trial_cfg(first, 1).algo
    assert trial_cfg(second, 0).env.kwargs != trial_cfg(second, 1).env.kwargs
    # stage 1's first trial is stage 0's best, again: same config, same score
    best = hp["best"]["trial"]
    assert trial_cfg(second, 0).algo == trial_cfg(first, best).algo
    assert trial_cfg(second, 0).env == trial_cfg(first, best).env
    again = record.TrialResult.read(record.trial_dir(second, 0)).objective
    assert again == pytest.approx(hp["best"]["value"], rel=1e-9)


def test_the_objective_is_the_unshaped_eval_return(staged):
    stage_dir, proc = staged
    assert proc.returncode == 0, proc.stderr[-3000:]
    progress = OmegaConf.to_object(OmegaConf.load(stage_dir / "stages.yaml"))
    assert progress["objective"] == "eval"
    for entry in progress["stages"]:
        sub_dir = stage_dir / entry["dir"]
        for n in (0, 1):
            result = record.TrialResult.read(record.trial_dir(sub_dir, n))
            metrics = pd.read_csv(record.trial_dir(sub_dir, n) / record.METRICS)
            assert result.objective == pytest.approx(metrics["eval_return"].iloc[-1])
            assert result.final == pytest.approx(metrics["total_reward_ma"].iloc[-1])
        best = entry["best"]
        result = record.TrialResult.read(record.trial_dir(sub_dir, best["trial"]))
        assert (best["value"], best["total_reward_ma"]) == (result.objective, result.final)
    values = [e["best"]["value"] for e in progress["stages"]]
    assert progress["best"]["value"] == max(values)
    top = progress["stages"][values.index(max(values))]
    assert progress["best"]["params"] == {**top["fixed"], **top["best"]["params"]}


def test_budget_hours_ends_a_search_and_the_staged_search(staged):
    """Resumed with a budget its first run already spent: the sweep starts no trial and says
    so (log, state.yaml); the staged search starts no stage and says so (stages.yaml)."""
    stage_dir, _ = staged
    progress = OmegaConf.load(stage_dir / "stages.yaml")
    first = stage_dir / progress.stages[0].dir
    cmd = [sys.executable, *shlex.split(progress.stages[0].command)[1:]]
    cmd += ["hydra.sweeper.n_trials=3", "hydra.sweeper.budget_hours=1e-06"]
    proc = subprocess.run(
        cmd, cwd=stage_dir.parent, env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rlhp: budget_hours=1e-06 ended the search: no new trial starts" in proc.stdout
    state = OmegaConf.load(first / record.STATE)
    assert state.ended_by == "budget_hours=1e-06"
    assert (state.complete, state.running) == (2, 0)
    args = ["+search=ppo_hopper_reward", "--budget-hours", "1e-6", "--hp-trials", "2"]
    args += ["--reward-generations", "2", *TINY, f"hydra.sweep.dir={stage_dir}"]
    proc = stage_cli(stage_dir.parent, *args, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "budget_hours=1e-06 ended the staged search at stage 2" in proc.stderr
    progress = OmegaConf.load(stage_dir / "stages.yaml")
    assert progress.ended_by == "budget_hours=1e-06"
    assert len(progress.stages) == 2 and not (stage_dir / "stage2_hp").exists()


def test_reward_weights_ranked_on_the_shaped_return_are_refused_before_launch(tmp_path):
    proc = stage_cli(tmp_path, "+search=ppo_hopper_reward", "objective=final", timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rlhp.stage: error: searched env.kwargs.forward_reward_weight shapes the training "
        "return that objective=final ranks on: use objective=eval (and eval_episodes>0), the "
        "greedy policy's return on the env's own reward"
    ]
    proc = stage_cli(tmp_path, "+search=ppo_halfcheetah", timeout=120)
    assert proc.returncode == 2 and "needs searched hyperparameters and reward" in proc.stderr
    assert not (tmp_path / "multirun").exists()
    sweep = [sys.executable, "-m", "rlhp.train", "-m", "+search=ppo_hopper_reward"]
    sweep += ["objective=auc", "hydra.sweeper.dry_run=true"]
    proc = subprocess.run(sweep, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    assert proc.returncode == 2
    assert "rlhp: error: searched env.kwargs.forward_reward_weight shapes" in proc.stderr
