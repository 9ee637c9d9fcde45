"""The real `python -m rlhp.train` CLI, run as a subprocess with tiny budgets.

Each run is checked through its artefacts only: the run directory layout, metrics.csv (pandas),
TensorBoard's own event reader (scalars and the HParams plugin data) and result.yaml.
"""

import math
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api_pb2 as hp_api
from tensorboard.plugins.hparams import metadata as hp_metadata

from rlhp import algo
from rlhp.errors import ConfigError

CONF = Path(__file__).resolve().parents[1] / "conf"
SCALARS = ["total_reward_ma", "policy_loss", "value_loss", "entropy", "lr", "fps"]
LOSSES = ["policy_loss", "value_loss", "entropy", "lr", "fps"]

# env -> (overrides, whether at least one episode finishes within the budget)
RUNS = {
    "cartpole": (["env=cartpole", "env.max_frame=1024", "log_frequency=256"], True),
    # 4 envs x 200-step episodes: the first episodes end at frame 800
    "pendulum": (
        ["env=pendulum", "env.max_frame=1024", "log_frequency=256", "algo.time_horizon=64"],
        True,
    ),
    # one env, 1000-step episodes
    "halfcheetah": (
        ["env=halfcheetah", "env.max_frame=1024", "log_frequency=256", "algo.time_horizon=128"],
        True,
    ),
    # slow on CPU: two rollouts of 64 frames, no episode ends
    "breakout": (
        [
            "env=breakout",
            "env.num_envs=4",
            "algo.time_horizon=16",
            "env.max_frame=128",
            "log_frequency=64",
        ],
        False,
    ),
}


def same(a: float, b: float) -> bool:
    """Equal as floats, NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def load_result(run_dir: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(run_dir / "result.yaml"))


def scalars(logdir: Path) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(
        str(logdir), size_guidance={event_accumulator.SCALARS: 0}
    )
    acc.Reload()
    return acc


def check_ok(proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("env", list(RUNS))
def test_train_env(env, rlhp_cli, tmp_path):
    overrides, episodes_end = RUNS[env]
    run_dir = tmp_path / "run"
    proc = rlhp_cli(*overrides, run_dir=run_dir, timeout=180)
    check_ok(proc)

    for name in [
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
        "session0",
        "checkpoints/session0.pt",
        "metrics.csv",
        "model_session0.pt",
        "result.yaml",
    ]:
        assert (run_dir / name).exists(), name
    cfg = OmegaConf.load(run_dir / ".hydra/config.yaml")
    assert cfg.env.name == env
    max_frame = cfg.env.max_frame

    # metrics.csv
    df = pd.read_csv(run_dir / "metrics.csv")
    assert set(SCALARS) <= set(df.columns)
    assert (df.session == 0).all()
    frames = df.frame.to_numpy()
    assert len(frames) >= 2
    assert frames[0] > 0 and (np.diff(frames) > 0).all()
    assert frames[-1] >= max_frame
    assert np.isfinite(df[LOSSES].to_numpy()).all()
    assert (df.fps > 0).all()
    lr = df.lr.to_numpy()
    assert (lr > 0).all() and (lr <= cfg.algo.lr).all()
    assert (np.diff(lr) < 0).all()  # annealed linearly towards 0
    rollout = cfg.env.num_envs * cfg.algo.time_horizon
    if frames[0] == rollout:  # the first update trains at the configured lr
        assert lr[0] == pytest.approx(cfg.algo.lr)
    ma = df.total_reward_ma.to_numpy()
    finite = np.isfinite(ma)
    if episodes_end:
        assert finite[-1]
    else:
        assert not finite.any()
    # once an episode has finished, the moving average stays defined
    if finite.any():
        assert finite[np.argmax(finite) :].all()
    if env == "cartpole":  # +1 per step, episodes of 8 to 500 steps
        assert ((ma[finite] >= 8) & (ma[finite] <= 500)).all()
    if env == "pendulum":  # rewards in [-16.3, 0] for 200 steps
        assert ((ma[finite] <= 0) & (ma[finite] >= -16.3 * 200)).all()

    # TensorBoard scalars: steps are frames, values those of metrics.csv
    acc = scalars(run_dir / "session0")
    tags = acc.Tags()["scalars"]
    for key in SCALARS:
        rows = df[np.isfinite(df[key])]
        if rows.empty:
            assert key not in tags
            continue
        events = acc.Scalars(key)
        assert [e.step for e in events] == rows.frame.tolist(), key
        np.testing.assert_allclose([e.value for e in events], rows[key], rtol=1e-6, err_msg=key)

    # result.yaml: one complete session, objective = final total_reward_ma
    result = load_result(run_dir)
    assert result["state"] == "complete"
    assert len(result["sessions"]) == 1
    assert result["frame"] == frames[-1]
    assert same(result["objective"], float(ma[-1]))
    assert same(result["sessions"][0]["final"], float(ma[-1]))
    assert result["objective_std"] == 0 or math.isnan(result["objective_std"])

    # HParams session info in the session's own run (the run dir is the logdir: run "session0")
    check_hparams(acc, run_dir, cfg, result)


def check_hparams(acc, run_dir: Path, cfg, result: dict) -> None:
    content = acc.PluginTagToContent(hp_metadata.PLUGIN_NAME)
    assert set(content) == {hp_metadata.SESSION_START_INFO_TAG, hp_metadata.SESSION_END_INFO_TAG}
    start = hp_metadata.parse_session_start_info_plugin_data(
        content[hp_metadata.SESSION_START_INFO_TAG]
    )
    assert start.group_name == run_dir.name  # the HParams table's row is named by the run
    end = hp_metadata.parse_session_end_info_plugin_data(content[hp_metadata.SESSION_END_INFO_TAG])
    assert end.status == hp_api.STATUS_SUCCESS
    hparams = dict(start.hparams)
    for key in ["algo.gamma", "algo.lam", "algo.lr", "algo.clip_eps", "algo.time_horizon"]:
        name = key.split(".")[1]
        assert hparams[key].number_value == pytest.approx(cfg.algo[name]), key
    assert hparams["seed"].number_value == cfg.seed
    assert hparams["env"].string_value == cfg.env.name
    assert hparams["algo.name"].string_value == cfg.algo.name
    assert hparams["algo.hid_layers"].string_value == str(list(cfg.algo.hid_layers))
    if not math.isnan(result["objective"]):
        [event] = acc.Scalars("hparams/objective")
        assert event.value == pytest.approx(result["objective"], rel=1e-6)
        assert event.step == result["frame"]


def compose(rlhp_cli, *overrides: str):
    proc = rlhp_cli("--cfg", "job", *overrides)
    check_ok(proc)
    return OmegaConf.create(proc.stdout)


def test_cfg_job_prints_config_with_overrides(rlhp_cli, tmp_path):
    cfg = compose(rlhp_cli, "algo.lam=0.7", "env.num_envs=16", "seed=3")
    assert cfg.algo.lam == 0.7
    assert cfg.env.num_envs == 16
    assert cfg.seed == 3
    assert cfg.env.id == "CartPole-v1"  # the default env
    assert not (tmp_path / "runs").exists()  # printing the config trains nothing


def test_tuned_defaults_are_applied(rlhp_cli):
    base = OmegaConf.load(CONF / "algo" / "ppo.yaml")
    cfgs = {
        "cartpole": compose(rlhp_cli, "env=cartpole"),
        "pendulum": compose(rlhp_cli, "env=pendulum", "algo.lam=0.5"),
    }
    for env, cfg in cfgs.items():
        tuned = OmegaConf.load(CONF / "tuned" / f"ppo_{env}.yaml")
        assert tuned, env
        for key in base:
            expected = tuned[key] if key in tuned else base[key]
            if env == "pendulum" and key == "lam":
                expected = 0.5  # the command line beats the tuned default
            assert cfg.algo[key] == expected, (env, key)
    assert cfgs["cartpole"].algo.time_horizon == 32
    assert cfgs["pendulum"].algo.time_horizon != 32


def test_two_sessions_auc_objective(rlhp_cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = rlhp_cli(
        "env.max_frame=768",
        "log_frequency=256",
        "max_session=2",
        "objective=auc",
        run_dir=run_dir,
    )
    check_ok(proc)
    for s in (0, 1):
        assert (run_dir / "checkpoints" / f"session{s}.pt").exists()
        assert (run_dir / f"model_session{s}.pt").exists()
        assert (run_dir / f"session{s}").is_dir()
    df = pd.read_csv(run_dir / "metrics.csv")
    assert sorted(df.session.unique()) == [0, 1]
    result = load_result(run_dir)
    sessions = result["sessions"]
    assert len(sessions) == 2
    aucs = []
    for s, summary in enumerate(sessions):
        ma = df[df.session == s].total_reward_ma.dropna().to_numpy()
        assert len(ma) >= 2
        assert summary["auc"] == pytest.approx(ma.mean())
        assert summary["final"] == pytest.approx(ma[-1])
        aucs.append(summary["auc"])
    assert aucs[0] != aucs[1]  # sessions run with different seeds
    assert result["objective"] == pytest.approx(np.mean(aucs))
    assert result["objective_std"] == pytest.approx(np.std(aucs))
    assert result["frame"] == sum(s["frame"] for s in sessions)


def test_greedy_evaluation_is_the_objective(rlhp_cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = rlhp_cli(
        "algo=dqn",
        "env.max_frame=1500",
        "log_frequency=500",
        "eval_episodes=4",
        "objective=eval",
        run_dir=run_dir,
    )
    check_ok(proc)
    df = pd.read_csv(run_dir / "metrics.csv")
    returns = df.eval_return.to_numpy()
    assert len(returns) == 3 and ((returns >= 8) & (returns <= 500)).all()  # CartPole
    events = scalars(run_dir / "session0").Scalars("eval_return")
    assert [e.step for e in events] == df.frame.tolist()
    np.testing.assert_allclose([e.value for e in events], returns, rtol=1e-6)
    result = load_result(run_dir)
    assert result["objective"] == pytest.approx(returns[-1])
    assert result["sessions"][0]["eval"] == pytest.approx(returns[-1])
    assert result["sessions"][0]["eval_best"] == pytest.approx(returns.max())
    # the best greedy policy is kept beside the final one (tests/test_loop.py replays it)
    best = torch.load(run_dir / "model_session0_best.pt")
    final = torch.load(run_dir / "model_session0.pt")
    assert "memory" not in best and set(best) == set(final)
    assert result["final"] == pytest.approx(df.total_reward_ma.iloc[-1])


# --- bad input -------------------------------------------------------------------------------


def assert_nothing_trained(run_dir: Path) -> None:
    assert not (run_dir / "checkpoints").exists()
    if run_dir.exists():
        assert not list(run_dir.rglob("*.pt"))
    assert not (run_dir / "result.yaml").exists()


@pytest.mark.parametrize(
    ("override", "mention"),
    [
        ("env.id=NoSuchEnv-v0", "NoSuchEnv-v0"),
        ("algo.name=nope", "nope"),
        ("env.max_frame=0", "max_frame"),
        ("env.id=???", "env.id"),
        ("objective=eval", "eval_episodes"),
        ("objective=best", "objective"),
        ("algo.lr=-0.001", "algo.lr=-0.001 is outside its domain (0, 1]"),
        ("algo.lr=1e6", "algo.lr=1000000.0 is outside its domain (0, 1]"),
        ("algo.lr=abc", "algo.lr must be a number, got 'abc'"),
        ("algo.gamma=1.5", "algo.gamma"),
        ("algo.hid_layers=[]", "algo.hid_layers must be a non-empty list"),
        ("algo.hid_layers=[0]", "algo.hid_layers must be a non-empty list"),
        ("device=gpu", "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        pytest.param(
            "device=cuda",
            "torch finds no CUDA GPU here",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA"),
        ),
    ],
)
def test_bad_config_one_line_error(override, mention, rlhp_cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = rlhp_cli(override, run_dir=run_dir)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("rlhp: error:")
    assert mention in lines[0]
    assert_nothing_trained(run_dir)


@pytest.mark.parametrize(
    ("override", "mention"),
    [("algo.nosuchkey=1", "nosuchkey"), ("env=nosuchenv", "nosuchenv")],
)
def test_hydra_errors(override, mention, rlhp_cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = rlhp_cli(override, run_dir=run_dir)
    assert proc.returncode != 0
    assert mention in proc.stderr
    assert_nothing_trained(run_dir)


@pytest.mark.skipif(not (CONF / "algo" / "dqn.yaml").exists(), reason="no discrete-only algo yet")
def test_algo_that_cannot_act_in_env_cli(rlhp_cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = rlhp_cli("algo=dqn", "env=pendulum", run_dir=run_dir)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("rlhp: error:")
    assert "dqn" in lines[0] and "Discrete" in lines[0]
    assert_nothing_trained(run_dir)


def test_algo_that_cannot_act_in_env_is_a_config_error():
    # only PPO exists and it acts in Discrete and Box spaces; the check itself must refuse others
    algo.check("ppo", gym.spaces.Discrete(2))
    algo.check("ppo", gym.spaces.Box(-1, 1, (3,)))
    with pytest.raises(ConfigError, match="ppo"):
        algo.check("ppo", gym.spaces.MultiBinary(3))
    with pytest.raises(ConfigError, match="nope"):
        algo.check("nope")


@pytest.mark.parametrize(
    "overrides",
    [
        ["env=cartpole", "algo.val_loss_coef=3e38"],
        ["env=pendulum", "algo.val_loss_coef=3e38", "algo.time_horizon=64"],
    ],
    ids=["cartpole", "pendulum"],
)
def test_diverging_loss_fails_the_run(overrides, rlhp_cli, tmp_path):
    # a value-loss weight near float32's largest makes the PPO loss overflow at the first update
    # (deterministic: seed 0); the run must fail and say so instead of reporting an objective
    run_dir = tmp_path / "run"
    proc = rlhp_cli(*overrides, "env.max_frame=2048", "log_frequency=256", run_dir=run_dir)
    assert proc.returncode != 0
    # an error line that names the loss and its value (not just any line that says "loss")
    pattern = re.compile(r"error.*\bloss\b.*\b(nan|inf)\b", re.IGNORECASE)
    assert any(pattern.search(line) for line in proc.stderr.splitlines()), proc.stderr[-3000:]
    assert not (run_dir / "result.yaml").exists()
