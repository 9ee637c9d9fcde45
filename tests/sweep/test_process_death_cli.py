"""Process death and failure causes through the real CLI: a crash inside a population job is
recorded with its cause, a garbage inbox line and a corrupted result.yaml lose nothing, SIGTERM
to the search stops it as Ctrl+C does, and a killed trial or population job (kill -9 of its
launcher or its process) leaves no orphan and runs again from its checkpoint, max_retries times.
"""

import contextlib
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock
from optuna.trial import TrialState

from rlhp.inbox import parse
from rlhp.sweep import _results

from ._cli import kill_group, load_study, output, run_sweep, start_sweep, state, wait_for

BASE = [
    "algo=ppo",
    "env=cartpole",
    "log_frequency=512",
    "hydra.sweeper.sampler.seed=0",
    "algo.lr=tag(log, interval(1e-4, 3e-3))",
    "hydra.sweeper.max_concurrent=1",
]
BATCHED = [*BASE, "hydra.sweeper.population=2"]
CONTROLLER = "rlhp.sweep._local"  # submitit's local launcher of one job (a trial, a population)
WORKER = "submitit.core._submit"  # the job's process


def processes(sweep_dir: Path, kind: str) -> list[int]:
    """Pids of the sweep's processes whose command line names `kind` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if kind in cmd and f"{sweep_dir}/" in cmd:
            pids.append(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def checkpointed(sweep_dir: Path):
    return lambda: list(sweep_dir.glob("*/checkpoints/session0.pt"))


@pytest.mark.parametrize(
    ("error", "again"),
    [
        ("UncompletedJobError: trial process killed by signal 9 (SIGKILL) without a result", True),
        ("population job 3: UncompletedJobError: ... killed by signal 6 (SIGABRT) ...", True),
        ("UncompletedJobError: trial process killed by signal 2 (SIGINT) without a result", False),
        (_results.ENDED_WITHOUT, True),
        ("population job 0: IndexError: list index out of range (see ...)", False),
        ("FloatingPointError: session 0: loss is nan", False),
        ("UncompletedJobError: job 41 ended (OUT_OF_MEMORY): has not produced any output", True),
        ("UncompletedJobError: job 41 ended (NODE_FAIL): has not produced any output", True),
        ("UncompletedJobError: job 41 ended (CANCELLED by 0) after its trial checkpointed", False),
        ("UncompletedJobError: job 41 ended (FAILED): has not produced any output", False),
    ],
)
def test_only_a_trial_whose_process_died_runs_again(error, again):
    assert _results.retriable(error) is again


@pytest.mark.parametrize(
    ("line", "taken"),
    [
        (b'{"trial": 3, "dir": "/s/3"}', (3, Path("/s/3"))),
        (b'\x00junk{"trial": 4, "dir": "/s/4"}', (4, Path("/s/4"))),  # appended onto garbage
        (b"\xff\xfe not json", None),
        (b'{"trial": "x", "dir": "/s/x"}', None),
        (b"[1, 2]", None),
    ],
)
def test_an_inbox_line_that_assigns_no_trial_is_skipped(line, taken):
    assert parse(line) == taken


def test_a_crash_inside_a_population_job_is_recorded_on_its_trials_with_its_cause(tmp_path):
    sweep, log = tmp_path / "sweep", tmp_path / "log"
    args = [*BATCHED, "env.max_frame=8192", "log_frequency=1024", "hydra.sweeper.n_trials=2"]
    proc = start_sweep(sweep, *args, log=log)
    try:
        wait_for(checkpointed(sweep), proc, 240, "a checkpoint", log)
    finally:
        kill_group(proc)
    checkpointed(sweep)()[0].write_bytes(b"\xb8" * 64)  # the resumed job cannot load it
    proc = run_sweep(sweep, *args)
    assert proc.returncode == 2, output(proc)
    trials = load_study(sweep).trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    for t in trials:
        error = t.user_attrs["error"]
        assert "UnpicklingError" in error and "populations/1/train.log" in error, error
        assert "retries" not in t.user_attrs  # an error of its own: not run again
    failures = state(sweep).failures
    assert sorted(failures) == [0, 1] and all("UnpicklingError" in v for v in failures.values())
    df = pd.read_csv(sweep / "experiment_df.csv")
    assert df.note.str.contains("UnpicklingError: invalid load key").all()


def test_a_garbage_line_in_an_inbox_is_skipped(tmp_path):
    sweep, log = tmp_path / "sweep", tmp_path / "log"
    proc = start_sweep(sweep, *BATCHED, "env.max_frame=2048", "hydra.sweeper.n_trials=4", log=log)
    folder = sweep / "populations" / "0"
    try:
        wait_for((folder / "inbox.jsonl").is_file, proc, 240, "an inbox", log)
        with FileLock(folder / ".inbox.lock"), open(folder / "inbox.jsonl", "ab") as f:
            f.write(b"\x00garbage, not an assignment\n")  # later trials come after it
        proc.wait(timeout=300)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]
    trials = load_study(sweep).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert "skipped a line of the inbox" in (folder / "train.log").read_text()


def test_sigterm_stops_the_search_as_ctrl_c_does_and_a_corrupted_result_runs_again(tmp_path):
    sweep, log = tmp_path / "sweep", tmp_path / "log"
    args = [*BATCHED, "env.max_frame=8192", "log_frequency=1024", "hydra.sweeper.n_trials=2"]
    proc = start_sweep(sweep, *args, log=log)
    try:
        wait_for(checkpointed(sweep), proc, 240, "a checkpoint", log)
        os.kill(proc.pid, signal.SIGTERM)  # the search's controller alone, as `kill` or `timeout`
        proc.wait(timeout=300)
        left = processes(sweep, "")
    finally:
        kill_group(proc)
    text = log.read_text()
    assert proc.returncode == 128 + signal.SIGTERM, text[-3000:]
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert last == "rlhp: stopped by SIGTERM; run the same command to resume"
    assert left == []  # every population job stopped before the controller ended
    assert [t.state for t in load_study(sweep).trials] == [TrialState.RUNNING] * 2
    st = state(sweep)  # written once the search stopped: what the study says
    assert (st.complete, st.running, list(st.running_trials)) == (0, 2, [0, 1])
    assert (sweep / "0" / "checkpoints" / "session0.pt").is_file()

    (sweep / "0" / "result.yaml").write_bytes(bytes(range(128, 256)))  # not UTF-8, not YAML
    again = run_sweep(sweep, *args)
    assert again.returncode == 0, output(again)
    assert "UnicodeDecodeError" not in again.stderr + again.stdout
    trials = load_study(sweep).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [t.user_attrs for t in trials]
    assert (sweep / "0" / "result.yaml.unreadable").is_file()
    for n in (0, 1):  # resumed from their checkpoints: each frame logged once
        df = pd.read_csv(sweep / str(n) / "metrics.csv")
        assert df.frame.is_unique and df.frame.max() == 8192


def test_a_killed_trial_launcher_leaves_no_orphan_and_its_trial_runs_again_max_retries_times(
    tmp_path,
):
    sweep, log = tmp_path / "sweep", tmp_path / "log"
    args = [*BASE, "env.max_frame=200000", "hydra.sweeper.n_trials=1"]
    proc = start_sweep(sweep, *args, "hydra.sweeper.max_retries=1", log=log)
    try:
        wait_for(checkpointed(sweep), proc, 240, "a checkpoint", log)
        (first,) = processes(sweep, WORKER)
        kill(processes(sweep, CONTROLLER))  # the trial's launcher: its process is orphaned
        wait_for(lambda: not alive(first), proc, 120, "the orphan to end", log)
        wait_for(lambda: processes(sweep, WORKER), proc, 120, "the trial to run again", log)
        kill(processes(sweep, WORKER))  # killed again: no retry left
        proc.wait(timeout=300)
    finally:
        kill_group(proc)
    text = log.read_text()
    assert "retry 1 of 1" in text, text[-3000:]
    (trial,) = load_study(sweep).trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["retries"] == 1
    assert "killed by signal 9 (SIGKILL)" in trial.user_attrs["error"]
    df = pd.read_csv(sweep / "0" / "metrics.csv")
    assert df.frame.is_unique  # the second run went on from the first one's checkpoint


def test_a_killed_population_job_leaves_no_orphan_and_its_trials_run_again(tmp_path):
    sweep, log = tmp_path / "sweep", tmp_path / "log"
    args = [*BATCHED, "env.max_frame=8192", "log_frequency=1024", "hydra.sweeper.n_trials=2"]
    proc = start_sweep(sweep, *args, log=log)
    try:
        wait_for(checkpointed(sweep), proc, 240, "a checkpoint", log)
        (first,) = processes(sweep, WORKER)
        kill(processes(sweep, CONTROLLER))
        proc.wait(timeout=300)
        orphan = alive(first)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert not orphan
    trials = load_study(sweep).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2, [t.user_attrs for t in trials]
    assert all(t.user_attrs["retries"] == 1 for t in trials)
    for n in (0, 1):
        df = pd.read_csv(sweep / str(n) / "metrics.csv")
        assert df.frame.is_unique and df.frame.max() == 8192
    df = pd.read_csv(sweep / "experiment_df.csv")
    assert df.note.str.contains("ran again 1x").all()
