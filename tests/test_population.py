"""Populations: a member trains exactly as it would alone, whatever the other members'
hyperparameters; structure is checked; freed slots are refilled; a failing member leaves alone."""

import numpy as np
import pandas as pd
import pytest
import torch
from _members import (
    CPU,
    assert_same_run,
    config,
    frame_of,
    kill_once_checkpointed,
    params,
    run_with_refill,
)
from omegaconf import OmegaConf
from tensorboard.backend.event_processing import event_accumulator

from rlhp.config import check_structure, signature
from rlhp.env import VecEnv
from rlhp.errors import ConfigError
from rlhp.population import Member, Population

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOSSES = ["policy_loss", "value_loss", "entropy", "lr"]


# PPO on CartPole (gymnasium's numpy-batched CartPole); A2C on Pendulum (continuous actions,
# SyncVectorEnv, observation normalisation and reward scaling per member)
CASES = {
    "ppo": ["algo=ppo", "env=cartpole", "env.max_frame=2048", "log_frequency=512"],
    "a2c": ["algo=a2c", "env=pendulum", "env.max_frame=2000", "log_frequency=500"],
}
HPARAMS = [  # three members that differ in every per-member hyperparameter
    ["seed=0", "algo.lr=1e-3", "algo.gamma=0.9", "algo.lam=0.8", "algo.entropy_coef=0.01"],
    ["seed=5", "algo.lr=3e-4", "algo.gamma=0.99", "algo.lam=0.95", "algo.entropy_coef=0.0"],
    ["seed=7", "algo.lr=3e-3", "algo.gamma=0.95", "algo.lam=1.0", "algo.entropy_coef=0.1"],
]


@pytest.mark.parametrize("algo", CASES)
def test_member_trains_as_a_single_run_whatever_the_other_members(algo, tmp_path):
    cfgs = [config(*CASES[algo], *h, "algo.clip_grad_val=1.0") for h in HPARAMS]
    if algo == "ppo":
        cfgs[2].algo.clip_eps = 0.1
    assert cfgs[0].env.obs_norm or algo == "ppo"
    Population([Member(c, tmp_path / f"m{i}") for i, c in enumerate(cfgs)], CPU).run()
    Population([Member(cfgs[1], tmp_path / "alone")], CPU).run()
    assert_same_run(tmp_path / "m1", tmp_path / "alone", LOSSES)
    # the members really differ: other weights, other returns
    assert not torch.allclose(
        params(tmp_path / "m0")["actor.weight"], params(tmp_path / "m1")["actor.weight"]
    )
    for i in range(3):
        df = pd.read_csv(tmp_path / f"m{i}" / "metrics.csv")
        assert df.frame.iloc[-1] >= cfgs[i].env.max_frame and len(df) == 4
        assert (tmp_path / f"m{i}" / "checkpoints" / "session0.pt").exists()


def test_members_differing_in_structure_are_refused_naming_the_key():
    base = config(*CASES["ppo"])
    check_structure([base, config(*CASES["ppo"], "algo.lr=0.1", "seed=3")])
    with pytest.raises(ConfigError, match=r"algo\.time_horizon"):
        check_structure([base, config(*CASES["ppo"], "algo.time_horizon=64")])
    with pytest.raises(ConfigError, match=r"env\.num_envs"):
        check_structure([base, config(*CASES["ppo"], "env.num_envs=4")])
    assert "algo.lr" not in signature(base) and "algo.hid_layers" in signature(base)


def test_a_stopped_member_frees_its_slot_for_a_fresh_member(tmp_path):
    """Member 0 is stopped at its first log point; its slot trains a new member, which ends
    exactly as the same config trained alone (fresh weights, env copies, statistics)."""
    stopped, finished = run_with_refill([config(*CASES["ppo"], *h) for h in HPARAMS], tmp_path)
    assert [m.run_dir.name for m in finished] == ["stopped", "m1", "refill"]
    assert stopped.stopped_at == 512 and stopped.frame == 512
    assert_same_run(tmp_path / "refill", tmp_path / "alone2", LOSSES)
    assert_same_run(tmp_path / "m1", tmp_path / "alone1", LOSSES)


def test_a_member_with_a_non_finite_loss_fails_alone(tmp_path):
    cfgs = [config(*CASES["ppo"], *h) for h in HPARAMS]
    members = [Member(c, tmp_path / f"m{i}") for i, c in enumerate(cfgs)]
    population = Population(members, CPU)
    population.agent.model.flat[1] = float("nan")  # member 1's weights are poisoned
    population.run()
    assert members[1].error is not None and "loss is nan" in members[1].error
    assert not (tmp_path / "m1" / "model_session0.pt").exists()
    Population([Member(cfgs[2], tmp_path / "alone")], CPU).run()
    assert_same_run(tmp_path / "m2", tmp_path / "alone", LOSSES)
    assert members[0].error is None and members[0].frame >= 2048


def test_groups_stepped_in_turn_a_rollout_each_train_as_each_alone(tmp_path):
    """Two populations of different structure (a population job's structure groups), stepped
    in turn with rollout(): each member trains exactly as alone; rollout() ends at a boundary
    and says False once its population has no member."""
    cfgs = [config(*CASES["ppo"], *HPARAMS[0]), config(*CASES["ppo"], *HPARAMS[1])]
    cfgs[1].algo.time_horizon = 2 * cfgs[0].algo.time_horizon  # 32 in tuned/ppo_cartpole
    groups = [Population([Member(c, tmp_path / f"g{i}")], CPU) for i, c in enumerate(cfgs)]
    frames = []
    while any([g.rollout() for g in groups]):
        assert all(g.agent.at_boundary for g in groups)
        frames.append([int(g.frames[0]) for g in groups])
    assert frames[:2] == [[256, 512], [512, 1024]]  # a rollout (8 envs x time_horizon) a turn
    assert len(frames) == 2048 // 256  # until the group of shorter rollouts ended too
    for i, c in enumerate(cfgs):
        Population([Member(c, tmp_path / f"alone{i}")], CPU).run()
        assert_same_run(tmp_path / f"g{i}", tmp_path / f"alone{i}", LOSSES)


# -- through the real CLI: max_session sessions train as one population


def test_sessions_train_in_lockstep_each_with_its_own_outputs(rlhp_cli, tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["env.max_frame=2048", "log_frequency=512", "max_session=4", "eval_episodes=2"]
    proc = rlhp_cli(*overrides, run_dir=run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(run_dir / "metrics.csv")
    assert sorted(df.session.unique()) == [0, 1, 2, 3]
    assert (df.groupby("session").frame.max() == 2048).all()
    # four seeds, four different runs
    assert df.groupby("session").policy_loss.first().nunique() == 4
    for s in range(4):
        assert (run_dir / f"model_session{s}.pt").exists()
        assert (run_dir / f"model_session{s}_best.pt").exists()
        assert (run_dir / "checkpoints" / f"session{s}.pt").exists()
        acc = event_accumulator.EventAccumulator(str(run_dir / f"session{s}"))
        acc.Reload()
        steps = [e.step for e in acc.Scalars("total_reward_ma")]
        assert steps == df[df.session == s].frame.tolist()
    result = OmegaConf.load(run_dir / "result.yaml")
    finals = df.sort_values("frame").groupby("session").total_reward_ma.last()
    assert result.objective == pytest.approx(finals.mean())
    assert len(result.sessions) == 4 and result.frame == 4 * 2048


def test_killed_population_resumes_every_member_from_its_checkpoint(
    rlhp_cli, rlhp_cli_background, tmp_path
):
    run_dir, log = tmp_path / "run", 1024
    common = [f"log_frequency={log}", "max_session=3"]
    ckpts = [run_dir / "checkpoints" / f"session{s}.pt" for s in range(3)]
    proc = rlhp_cli_background(*common, "env.max_frame=500000", run_dir=run_dir)
    kill_once_checkpointed(proc, ckpts, 2 * log)
    at_kill = [frame_of(p) for p in ckpts]
    new_max = max(at_kill) + 2 * log
    proc = rlhp_cli(*common, f"env.max_frame={new_max}", run_dir=run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(run_dir / "metrics.csv")
    for s in range(3):
        frames = df[df.session == s].frame.to_numpy()
        assert (np.diff(frames) > 0).all()  # each frame once, in order
        assert frames[-1] >= new_max
        # the rows before the kill are the first run's, continued (not restarted from 0)
        history = pd.DataFrame(torch.load(ckpts[s], weights_only=False)["history"])
        assert history.frame.tolist() == frames.tolist()
        assert (frames <= at_kill[s]).sum() == at_kill[s] // log
    result = OmegaConf.load(run_dir / "result.yaml")
    assert result.frame == df.groupby("session").frame.max().sum()


@pytest.mark.parametrize("algo", CASES)
def test_members_train_unchanged_when_another_goes_idle_and_it_stays_as_it_stopped(algo, tmp_path):
    """Member 0 is stopped at its first log point and its slot stays empty: the others train
    on, idle slot skipped, exactly as in a population where member 0 never existed; member 0's
    weights, optimiser state and generator stay as it stopped."""
    cfgs = [config(*CASES[algo], *h, "algo.clip_grad_val=1.0") for h in HPARAMS]
    stopped = Member(cfgs[0], tmp_path / "stopped", reporter=lambda frame, value: False)
    population = Population(
        [stopped, *(Member(c, tmp_path / f"m{i}") for i, c in enumerate(cfgs[1:], 1))], CPU
    )
    population.run()
    assert 0 < stopped.frame < cfgs[0].env.max_frame
    Population([Member(c, tmp_path / f"alone{i}") for i, c in enumerate(cfgs[1:], 1)], CPU).run()
    for i in (1, 2):
        assert_same_run(tmp_path / f"m{i}", tmp_path / f"alone{i}", LOSSES)
    at_stop = torch.load(tmp_path / "stopped" / "checkpoints" / "session0.pt", weights_only=False)
    now = population.agent.member_state(0)
    for part in ("model", "optimizer"):
        for key, value in at_stop["agent"][part].items():
            if isinstance(value, dict):
                for name in value:
                    assert torch.equal(value[name], now[part][key][name]), (part, key, name)
            else:
                assert torch.equal(value, now[part][key]), (part, key)


@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_an_idle_members_env_copies_are_not_stepped(env):
    """VecEnv.step(action, active): an idle member's copies, episode returns and statistics stay
    as they are; an active member steps exactly as in an env of its own. CartPole is
    gymnasium's numpy-batched env, Pendulum a SyncVectorEnv with observation normalisation and
    reward scaling per member."""
    cfg = config("algo=a2c", f"env={env}")
    three, alone = VecEnv(cfg, [0.9, 0.99, 0.95], members=3), VecEnv(cfg, 0.99)
    n, rng, space = cfg.env.num_envs, np.random.default_rng(0), three.action_space
    three.reset([0, 5, 7])
    alone.reset(5)
    active = np.ones(3, bool)

    def idle_state() -> list:
        inner = three.env
        copies = (
            [inner.envs[i].unwrapped.state.copy() for i in range(n)]
            if env == "pendulum"
            else [inner.env.state[:, :n].copy(), inner.env.steps[:n].copy()]
        )
        rows = slice(0, n)
        kept = [three.returns[rows], three.lengths[rows], three.discounted[rows]]
        return [*copies, *(x.copy() for x in kept), three.state_dict(0)]

    episodes = []
    for t in range(300):  # episode ends on both (Pendulum truncates at 200)
        if t == 20:
            active[0], before = False, idle_state()
        action = (
            rng.integers(2, size=3 * n)
            if env == "cartpole"
            else rng.uniform(space.low, space.high, (3 * n, 1)).astype(np.float32)
        )
        out = three.step(action, active)
        ref = alone.step(action[n : 2 * n])
        for x, y in zip(out, ref, strict=True):
            if y is None:
                assert x is None or not out[2][n : 2 * n].any()
            else:
                np.testing.assert_array_equal(x[n : 2 * n], y)
        if t >= 20:
            assert not out[0][:n].any() and not (out[2] | out[3])[:n].any()
        episodes += three.pop_member_episodes()[1]
    assert episodes == [ret for ret, _ in alone.pop_episodes()] and episodes
    after = idle_state()
    for x, y in zip(before[:-1], after[:-1], strict=True):
        np.testing.assert_array_equal(x, y)
    for stats in ("obs_rms", "ret_rms"):
        for key, value in before[-1][stats].items():
            np.testing.assert_array_equal(value, after[-1][stats][key])


def test_the_loop_reads_a_host_mirror_of_the_active_mask_kept_in_step(tmp_path):
    """The loop reads which members are active from a numpy mirror (no device sync a step); it
    equals the device's mask before every env step, after every update and as each member ends:
    a member failed by a non-finite loss, its slot refilled, a member stopped, one done."""
    cfgs = [config(*CASES["ppo"], *h, "env.max_frame=1024") for h in HPARAMS]
    stopped = Member(cfgs[0], tmp_path / "stopped", reporter=lambda frame, value: False)
    queue = [Member(cfgs[2], tmp_path / "refill")]
    masks = []

    def in_step(where: str) -> None:
        host = agent.active.host.tolist()
        assert host == agent.active.tensor.tolist(), where
        if not masks or masks[-1][1] != host:
            masks.append((where, host))

    population = Population(
        [stopped, Member(cfgs[1], tmp_path / "failed"), Member(cfgs[2], tmp_path / "m2")],
        CPU,
        refill=lambda: queue.pop() if queue else None,
        on_finish=lambda member: in_step(f"end {member.run_dir.name}"),
    )
    agent, env_step, update = population.agent, population.env.step, population.agent.update
    agent.model.flat[1] = float("nan")  # member 1's weights are poisoned

    def step(action, active=None):
        in_step("step")
        return env_step(action, active)

    def checked_update(frames):
        losses = update(frames)
        in_step("update")
        return losses

    population.env.step, agent.update = step, checked_update
    population.run()
    assert masks == [
        ("step", [True, True, True]),
        ("update", [True, False, True]),  # member 1's loss went NaN
        ("step", [True, True, True]),  # its slot refilled
        ("end stopped", [False, True, True]),
        ("end m2", [False, True, False]),
        ("end refill", [False, False, False]),
    ]
