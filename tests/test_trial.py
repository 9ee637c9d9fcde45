"""What a trial does around training (rlhp.trial): its device, its sessions in lockstep, its
result.yaml, and how it stops on a signal."""

import math
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from _members import TINY, config

from rlhp import trial
from rlhp.errors import Preempted
from rlhp.member import Member, summarize
from rlhp.record import TrialResult
from rlhp.tb import HPARAMS_SUFFIX, session_dir
from rlhp.trial import StopOnSignal, device, local_controller, lockstep, train_trial, write_result

CONF = Path(__file__).resolve().parents[1] / "conf"
SUBMITIT = ("SUBMITIT_EXECUTOR", "SUBMITIT_LOCAL_JOB_ID", "SUBMITIT_LOCAL_WITH_SHELL")


class Reports:
    """A trial's reporter that records what it is told and stops the trial at `stop_at`."""

    def __init__(self, stop_at: int | None = None):
        self.seen: list[tuple[int, float]] = []
        self.stop_at = stop_at

    def __call__(self, frame: int, value: float) -> bool:
        self.seen.append((frame, value))
        return self.stop_at is None or frame < self.stop_at


@pytest.fixture
def handlers(monkeypatch):
    """SIGTERM and SIGUSR2 handled by a recorder (restored after), outside any submitit job."""
    for name in SUBMITIT:
        monkeypatch.delenv(name, raising=False)
    seen: list[int] = []
    old = {sig: signal.signal(sig, lambda s, _: seen.append(s)) for sig in StopOnSignal.SIGNALS}
    yield seen
    for sig, handler in old.items():
        signal.signal(sig, handler)


def test_device():
    assert device("cpu") == torch.device("cpu")
    assert device("cuda:1") == torch.device("cuda", 1)  # refused later, not here
    assert device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_lockstep_reports_the_mean_once_and_stops_every_session(tmp_path: Path):
    cfg = config()
    members = [Member(cfg, tmp_path, s) for s in range(3)]
    reports = Reports(stop_at=200)
    lockstep(members, reports)
    assert len({id(m.lockstep) for m in members}) == 1
    for n, (frame, scores) in enumerate(((100, (1.0, 2.0, 6.0)), (200, (4.0, math.nan, 5.0)))):
        for member, score in zip(members, scores, strict=True):
            member.frame = frame
            member.report(score)
            assert len(reports.seen) == n + (member.session == 2)  # the last session reports
    assert reports.seen == [(100, 3.0), (200, 4.5)]  # a non-finite score is left out
    assert [m.stopped_at for m in members] == [None, None, 200]  # the last one is told at once
    for member in members:
        member.follow()
    assert [m.stopped_at for m in members] == [200, 200, 200]


def test_lockstep_without_a_reporter_leaves_the_sessions_alone(tmp_path: Path):
    members = [Member(config(), tmp_path, s) for s in range(2)]
    lockstep(members, None)
    assert all(m.reporter is None and m.lockstep is None for m in members)


def session(frame: int, *mas: float, stopped_at: int | None = None) -> dict:
    history = [{"total_reward_ma": ma} for ma in mas]
    return summarize(history, frame, wall=1.5, stopped_at=stopped_at)


@pytest.mark.parametrize("objective", ["final", "auc"])
def test_write_result_writes_the_mean_objective_and_hparams(tmp_path: Path, objective: str):
    cfg = config(f"objective={objective}")
    summaries = [session(256, 10.0, 20.0), session(256, 30.0, 60.0)]
    written = write_result(cfg, tmp_path, summaries)
    result = TrialResult.read(tmp_path)
    mean, std = {"final": (40.0, 20.0), "auc": (30.0, 15.0)}[objective]  # of 20, 60 / 15, 45
    assert (result.state, result.objective, result.objective_std) == ("complete", mean, std)
    assert (result.final, result.max, result.frame) == (40.0, 60.0, 512)
    assert result.objective == written.objective
    assert [s["auc"] for s in result.sessions] == [15.0, 45.0]
    for s in range(2):
        assert len(list(session_dir(tmp_path, s).glob(f"*{HPARAMS_SUFFIX}"))) == 1


def test_write_result_of_a_stopped_trial(tmp_path: Path):
    summaries = [session(128, 5.0, stopped_at=128), session(128, 7.0, stopped_at=128)]
    write_result(config(), tmp_path, summaries)
    result = TrialResult.read(tmp_path)
    assert (result.state, result.stopped_at, result.objective) == ("stopped", 128, 6.0)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "4321"}, 4321),
        ({"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "4321_0"}, None),
        ({"SUBMITIT_EXECUTOR": "slurm", "SUBMITIT_LOCAL_JOB_ID": "4321"}, None),
        ({"SUBMITIT_LOCAL_JOB_ID": "4321"}, None),
    ],
)
def test_local_controller_from_submitit_variables(monkeypatch, env: dict, expected: int | None):
    for name in SUBMITIT:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert local_controller() == expected


def test_local_controller_started_through_a_shell_is_the_parent(monkeypatch):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4321")  # the shell's pid
    monkeypatch.setenv("SUBMITIT_LOCAL_WITH_SHELL", "1")
    assert local_controller() == os.getppid()


@pytest.mark.parametrize("sig", StopOnSignal.SIGNALS)
def test_a_signal_asks_the_session_to_stop_then_hands_over(handlers: list[int], sig: int):
    stop = StopOnSignal()
    stop.session = SimpleNamespace(stop_requested=False)
    assert stop.received is None and stop.controller is None and not stop.orphaned()
    os.kill(os.getpid(), sig)
    assert stop.received == sig
    assert stop.session.stop_requested
    assert handlers == []  # the previous handler waits for the checkpoint
    stop.hand_over()
    assert handlers == [sig]


def test_a_task_whose_local_controller_is_gone_stops_and_exits(monkeypatch, handlers: list[int]):
    asked: list[int] = []
    monkeypatch.setattr(trial, "end_with_parent", asked.append)  # no prctl on the test process
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", str(os.getppid() + 1_000_000))  # not our parent
    stop = StopOnSignal()
    assert asked == [signal.SIGTERM]
    assert stop.orphaned() and stop.received == signal.SIGTERM
    with pytest.raises(SystemExit) as exit_:
        stop.hand_over()
    assert exit_.value.code == 128 + signal.SIGTERM
    assert handlers == []  # an orphan's result would go nowhere: no requeue either


@pytest.mark.usefixtures("one_torch_thread")
def test_train_trial_reports_the_mean_over_its_sessions(tmp_path: Path, handlers: list[int]):
    cfg = config(*TINY, "max_session=2")
    reports = Reports()
    summaries = train_trial(cfg, tmp_path, torch.device("cpu"), StopOnSignal(), reports)
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    mean = metrics.groupby("frame").total_reward_ma.mean()
    assert [frame for frame, _ in reports.seen] == [128, 256]
    assert [value for _, value in reports.seen] == pytest.approx(mean.loc[[128, 256]].tolist())
    assert [s["frame"] for s in summaries] == [256, 256]


@pytest.mark.usefixtures("one_torch_thread")
def test_train_trial_signalled_checkpoints_and_raises_preempted(
    tmp_path: Path, handlers: list[int]
):
    cfg = config(*TINY, "max_session=2")
    stop = StopOnSignal()
    os.kill(os.getpid(), signal.SIGUSR2)
    with pytest.raises(Preempted):
        train_trial(cfg, tmp_path, torch.device("cpu"), stop, None)
    for s in range(2):
        state = torch.load(tmp_path / "checkpoints" / f"session{s}.pt", weights_only=False)
        assert 0 < state["frame"] < cfg.env.max_frame
    assert not TrialResult.exists(tmp_path)
