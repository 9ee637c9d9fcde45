"""A population job's trials (rlhp.batch): taken from its inbox as the controller assigns them,
queued as max_session members each, a trial folder another process holds taken once free, and
result.yaml written when a trial's last member ends."""

import json
import logging
from pathlib import Path

import pytest
import torch
from _members import TINY as MEMBERS_TINY
from filelock import FileLock, Timeout
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from rlhp import record
from rlhp.batch import Groups, Trials, train_batch
from rlhp.errors import Preempted
from rlhp.inbox import Inbox
from rlhp.population import Population
from rlhp.record import TrialResult

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = [*MEMBERS_TINY, "max_session=2"]


def config(*overrides: str) -> DictConfig:
    """A trial's config with its hydra node, as the controller composes it."""
    with initialize_config_dir(config_dir=str(CONF)):
        return compose("config", overrides=[*TINY, *overrides], return_hydra_config=True)


def assign(inbox: Inbox, sweep_dir: Path, cfg: DictConfig, *numbers: int) -> list[Path]:
    """Trial folders written as the controller writes them, assigned to `inbox`."""
    cfg = cfg.copy()
    with open_dict(cfg):
        hydra = cfg.pop("hydra")
    run_dirs = []
    for n in numbers:
        run_dir = record.trial_dir(sweep_dir, n)
        record.write_run(run_dir, cfg, [f"seed={cfg.seed}"], hydra)
        inbox.put(n, run_dir)
        run_dirs.append(run_dir)
    return run_dirs


def free(run_dir: Path) -> bool:
    """Whether another process could take the trial folder now."""
    lock = FileLock(run_dir / ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    lock.release()
    return True


def trained(trials: Trials, run_dir: Path, *total_reward_ma: float) -> list:
    """The trial's members as a population leaves them: trained, one log point each."""
    members = trials.running[run_dir][0]
    for member, ma in zip(members, total_reward_ma, strict=True):
        member.frame = member.cfg.env.max_frame
        member.history = [{"total_reward_ma": ma}]
    return members


@pytest.fixture(scope="module")
def cfg() -> DictConfig:
    return config()


@pytest.fixture
def inbox(tmp_path: Path) -> Inbox:
    return Inbox(record.population_dir(tmp_path, 0))


def test_take_queues_max_session_members_per_trial(tmp_path: Path, inbox: Inbox, cfg):
    a, b = assign(inbox, tmp_path, cfg, 4, 2)
    trials = Trials(inbox, tmp_path)
    trials.take()
    assert [(m.run_dir, m.session, m.seed) for m in trials.queue] == [
        (a, 0, 0),
        (a, 1, 1),
        (b, 0, 0),
        (b, 1, 1),
    ]
    assert trials.queue[0].cfg.env.max_frame == 256  # its own folder's config
    assert all(m.reporter is None for m in trials.queue)  # no search scheduler
    assert set(trials.running) == {a, b}
    assert not free(a) and not free(b)  # held while its members train
    trials.take()
    assert len(trials.queue) == 4  # taken once


def test_a_trial_reports_to_asha_as_one(tmp_path: Path, inbox: Inbox):
    cfg = config("+meta.search_scheduler={grace_period: 128, reduction_factor: 2}")
    assign(inbox, tmp_path, cfg, 0, 1)
    trials = Trials(inbox, tmp_path)
    trials.take()
    groups = [m.lockstep for m in trials.queue]
    assert groups[0] is groups[1] and groups[2] is groups[3] and groups[0] is not groups[2]
    for member, score in zip(trials.queue, (1.0, 3.0, 10.0, 30.0), strict=True):
        member.frame = 128
        member.report(score)
    rungs = (tmp_path / record.ASHA / "rungs.jsonl").read_text().splitlines()
    reported = [(r["trial"], r["rung"], r["value"]) for r in map(json.loads, rungs)]
    assert reported == [("0", 128, 2.0), ("1", 128, 20.0)]  # one mean per trial, its number


def test_a_trial_folder_held_elsewhere_waits_until_free(tmp_path: Path, inbox: Inbox, cfg):
    a, b = assign(inbox, tmp_path, cfg, 0, 1)
    inbox.close()
    stale = FileLock(b / ".lock")  # a job of a killed controller still trains it
    stale.acquire()
    trials = Trials(inbox, tmp_path)
    trials.take()
    assert {m.run_dir for m in trials.queue} == {a}
    assert trials.waiting == [(1, b)]
    trials.queue.clear()
    assert not inbox.open and trials.more()  # the closed inbox is drained, b is not
    trials.take()
    assert trials.waiting == [(1, b)] and not trials.queue
    stale.release()
    member = trials.next()
    assert (member.run_dir, member.session) == (b, 0)
    assert trials.waiting == [] and len(trials.queue) == 1


def test_next_and_more(tmp_path: Path, inbox: Inbox, cfg):
    trials = Trials(inbox, tmp_path)
    assert trials.next() is None
    assert not trials.more()  # no controller ever beat
    inbox.beat()
    assert trials.more() and trials.next() is None  # one may come
    assign(inbox, tmp_path, cfg, 3)
    inbox.close()
    assert trials.more()
    assert [trials.next().session for _ in range(2)] == [0, 1]
    assert trials.next() is None and not trials.more()


def test_finished_writes_the_result_once_every_member_ended(tmp_path: Path, inbox: Inbox, cfg):
    a, b = assign(inbox, tmp_path, cfg, 0, 1)
    trials = Trials(inbox, tmp_path)
    trials.take()
    first, second = trained(trials, a, 10.0, 30.0)
    trials.finished(second)
    assert not TrialResult.exists(a) and not free(a) and trials.ended == 0
    trials.finished(first)
    result = TrialResult.read(a)
    assert (result.state, result.objective, result.objective_std) == ("complete", 20.0, 10.0)
    assert free(a) and set(trials.running) == {b} and trials.ended == 1
    assert not TrialResult.exists(b)


def test_a_member_that_failed_fails_its_trial(tmp_path: Path, inbox: Inbox, cfg):
    (a,) = assign(inbox, tmp_path, cfg, 0)
    trials = Trials(inbox, tmp_path)
    trials.take()
    members = trained(trials, a, 10.0, 30.0)
    members[1].error = "PPO loss is nan at frame 128"
    for member in members:
        trials.finished(member)
    result = TrialResult.read(a)
    assert result.state == "failed"
    assert result.error == "session 1: PPO loss is nan at frame 128"
    assert free(a) and trials.ended == 1 and not trials.running


@pytest.mark.usefixtures("one_torch_thread")
def test_train_batch_trains_every_assigned_trial(tmp_path: Path, inbox: Inbox, cfg):
    """Three trials through a population of two trials (four members): the third refills."""
    run_dirs = assign(inbox, tmp_path, cfg, 0, 1, 2)
    inbox.close()
    assert train_batch(cfg, tmp_path, inbox.folder, 2) == 3.0
    for run_dir in run_dirs:
        result = TrialResult.read(run_dir)
        assert (result.state, result.frame) == ("complete", 2 * 256)
        assert free(run_dir)


@pytest.mark.usefixtures("one_torch_thread")
def test_train_batch_trains_two_structures_at_once_in_groups(tmp_path, inbox, cfg, caplog):
    """Structure groups: two of time_horizon 16 and one of 32 through a job of two trials in two
    groups of one trial each; the second 16 waits for its group's slot."""
    other = config("algo.time_horizon=32", "env.max_frame=512")
    run_dirs = assign(inbox, tmp_path, cfg, 0, 1) + assign(inbox, tmp_path, other, 2)
    inbox.close()
    with caplog.at_level(logging.INFO, logger="rlhp"):
        assert train_batch(cfg, tmp_path, inbox.folder, 2, groups=2) == 3.0
    for run_dir, frame in zip(run_dirs, (256, 256, 512), strict=True):
        result = TrialResult.read(run_dir)
        assert (result.state, result.frame) == ("complete", 2 * frame)
        assert free(run_dir)
    started = [r.getMessage() for r in caplog.records if "structure group of" in r.getMessage()]
    assert started == [
        "rlhp: structure group of trials 0 started (1 live)",
        "rlhp: structure group of trials 2 started (2 live)",
    ]


@pytest.mark.usefixtures("one_torch_thread")
def test_a_stop_checkpoints_every_group_and_raises_preempted(tmp_path, inbox, cfg, monkeypatch):
    """A stop requested (by StopOnSignal) during one group's rollout: every group's members
    are checkpointed, also those of the group that has not stepped yet."""
    other = config("algo.time_horizon=32")
    run_dirs = assign(inbox, tmp_path, cfg, 0) + assign(inbox, tmp_path, other, 1)
    inbox.close()
    job = Groups(Trials(inbox, tmp_path), size=1)
    rollout = Population.rollout

    def then_stop(population: Population) -> bool:
        job.stop_requested = True  # as the signal handler does, mid-rollout
        return rollout(population)

    monkeypatch.setattr(Population, "rollout", then_stop)
    with pytest.raises(Preempted, match="2 structure groups"):
        job.run()
    for run_dir, frame in zip(run_dirs, (128, 0), strict=True):
        for session in (0, 1):
            state = torch.load(run_dir / "checkpoints" / f"session{session}.pt", weights_only=False)
            assert state["frame"] == frame
        assert not TrialResult.exists(run_dir)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_group_emptied_takes_a_trial_of_its_structure_assigned_later(tmp_path, inbox, cfg):
    (first,) = assign(inbox, tmp_path, cfg, 0)
    trials = Trials(inbox, tmp_path)
    job = Groups(trials, size=1)
    job.start()
    (kind,) = job.live
    while not TrialResult.exists(first):
        assert job.rollout(kind)
    assert kind in job.live and not any(job.live[kind].running)  # empty, not ended yet
    (later,) = assign(inbox, tmp_path, cfg, 1)
    trials.take()
    assert not job.rollout(kind)  # nothing to step: its empty slots took trial 1's members
    assert kind in job.live and all(job.live[kind].running)
    inbox.close()
    job.run()
    assert TrialResult.read(later).state == "complete" and trials.ended == 2
