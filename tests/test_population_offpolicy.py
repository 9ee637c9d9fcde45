"""The one engine with the off-policy agents (DQN, SAC): a member trains as it would alone
whatever the other members (its replay memory, schedules and random streams its own), a stopped
member's slot goes to a fresh member that trains as it would alone, and a member whose loss goes
non-finite fails alone."""

import pandas as pd
import pytest
from _members import CPU, assert_same_run, config, run_with_refill

from rlhp.member import Member
from rlhp.population import Population, member_bytes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# tiny nets and budgets; training starts early and often so that the first log points follow
# many gradient steps
CASES = {
    "dqn": (
        ["algo=dqn", "env=cartpole", "env.num_envs=2", "algo.hid_layers=[32]"]
        + ["algo.learning_starts=100", "algo.training_frequency=20", "algo.training_iter=2"]
        + ["algo.target_update_frequency=50", "algo.prioritized=true"],
        ["q_loss", "q_mean", "epsilon", "lr"],
        "model",
    ),
    "sac": (
        ["algo=sac", "env=pendulum", "algo.hid_layers=[32,32]", "algo.batch_size=32"]
        + ["algo.learning_starts=100", "algo.training_frequency=10", "algo.training_iter=2"],
        ["q_loss", "policy_loss", "alpha"],
        "actor",
    ),
}
FRAMES = ["env.max_frame=800", "log_frequency=200"]
HPARAMS = {  # members that differ in per-member hyperparameters
    "dqn": [
        ["seed=0", "algo.lr=1e-3", "algo.gamma=0.9", "algo.tau=1.0", "algo.double=false"],
        ["seed=5", "algo.lr=3e-4", "algo.gamma=0.99", "algo.tau=0.5", "algo.double=true"],
        ["seed=7", "algo.lr=3e-3", "algo.gamma=0.95", "algo.alpha_per=0.4", "algo.beta=0.6"],
    ],
    "sac": [
        ["seed=0", "algo.lr=1e-3", "algo.gamma=0.9", "algo.tau=0.01"],
        ["seed=5", "algo.lr=3e-4", "algo.gamma=0.99", "algo.auto_alpha=false", "algo.alpha=0.2"],
        ["seed=7", "algo.lr=3e-3", "algo.gamma=0.95", "algo.tau=0.05"],
    ],
}


def case(algo: str, hparams: list[str]):
    """The config of `algo`'s case with the per-member hyperparameters `hparams`."""
    return config(*CASES[algo][0], *FRAMES, *hparams)


@pytest.mark.parametrize("algo", list(CASES))
def test_a_stopped_members_slot_goes_to_a_fresh_member_that_trains_as_alone(algo, tmp_path):
    """Member 0 is stopped at its first log point; its slot trains a new member; that member and
    member 1 end exactly as their configs trained alone."""
    stopped, finished = run_with_refill([case(algo, h) for h in HPARAMS[algo]], tmp_path)
    assert [m.run_dir.name for m in finished] == ["stopped", "m1", "refill"]
    assert stopped.stopped_at == 200 == stopped.frame
    assert_same_run(tmp_path / "refill", tmp_path / "alone2", *CASES[algo][1:])
    assert_same_run(tmp_path / "m1", tmp_path / "alone1", *CASES[algo][1:])
    trained = pd.read_csv(tmp_path / "m1" / "metrics.csv")[CASES[algo][1][0]]
    assert trained.notna().sum() >= 3  # it really trained between log points


@pytest.mark.parametrize("algo", list(CASES))
def test_a_member_with_a_non_finite_loss_fails_alone(algo, tmp_path):
    cfgs = [case(algo, h) for h in HPARAMS[algo]]
    members = [Member(c, tmp_path / f"m{i}") for i, c in enumerate(cfgs)]
    population = Population(members, CPU)
    net = population.agent.q_net if algo == "dqn" else population.agent.critic
    net.flat[1] = float("nan")  # member 1's weights are poisoned
    population.run()
    assert members[1].error is not None and "loss is nan" in members[1].error
    assert not (tmp_path / "m1" / "model_session0.pt").exists()
    Population([Member(cfgs[2], tmp_path / "alone")], CPU).run()
    assert_same_run(tmp_path / "m2", tmp_path / "alone", *CASES[algo][1:])
    assert members[0].error is None and members[0].frame >= 800


def test_member_bytes_count_each_replay_frame_as_the_memory_stores_it():
    """The memory check's estimate grows by the replay memory's bytes per frame: CartPole's obs
    (4 float32), its action (int64), reward (float32), three flags and two PER tree nodes."""
    small, large = (case("dqn", [f"algo.memory_size={n}"]) for n in (1000, 3000))
    assert member_bytes(large) - member_bytes(small) == 2000 * (4 * 4 + 8 + 4 + 3 + 16)
