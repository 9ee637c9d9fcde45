"""Nothing lost on disk, through the real CLI: a torn journal, a trial created without its
parameters, a changed space, a full disk, a read-only sweep dir, a killed trial, Ctrl+C.

Every case runs `python -m rlhp.train -m ...` in a subprocess and reads back the real journal.
"""

import contextlib
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from ._cli import (
    TINY,
    kill_group,
    load_study,
    output,
    run_cli,
    run_sweep,
    start_sweep,
    trial_dirs,
    wait_for,
)

LR = "algo.lr=tag(log, interval(1e-4, 1e-3))"
BASE = [*TINY, "hydra.sweeper.n_trials=2", "hydra.sweeper.max_concurrent=2", LR]


def one_at_a_time(max_frame: int, n_trials: int, *more: str) -> list[str]:
    """A sweep of n_trials trials of max_frame frames each, one trial at a time."""
    return [
        f"env.max_frame={max_frame}",
        "log_frequency=500",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.max_concurrent=1",
        *more,
        LR,
    ]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished sweep of two trials; tests work on copies of it."""
    sweep_dir = tmp_path_factory.mktemp("base") / "sweep"
    proc = run_sweep(sweep_dir, *BASE)
    assert proc.returncode == 0, output(proc)
    return sweep_dir


def copy(finished: Path, tmp_path: Path) -> Path:
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(finished, sweep_dir)
    return sweep_dir


def launched(sweep_dir: Path) -> list:
    return [t for t in load_study(sweep_dir).get_trials() if "rejected" not in t.user_attrs]


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("rlhp: error: ")]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_torn_journal_resumes_to_exactly_n_trials(finished, tmp_path, seed):
    sweep_dir = copy(finished, tmp_path)
    path = sweep_dir / "study.journal"
    data = path.read_bytes()
    cut = random.Random(seed).randrange(len(data) // 2, len(data) - 1)
    path.write_bytes(data[:cut] if data[cut - 1 : cut] != b"\n" else data[: cut - 1])

    reader = run_cli("analyze", sweep_dir)  # reads what is complete, sets the torn tail aside
    assert reader.returncode == 0, output(reader)
    assert (sweep_dir / "study.journal.torn").is_file()
    proc = run_sweep(sweep_dir, *BASE)
    assert proc.returncode == 0, output(proc)
    trials = launched(sweep_dir)
    assert len(trials) == 2, [(t.number, t.state, t.params) for t in trials]
    assert all(t.state == TrialState.COMPLETE for t in trials), output(proc)
    assert len(set(t.number for t in trials)) == 2
    assert "Traceback" not in proc.stderr


def test_a_trial_created_without_parameters_is_never_launched(finished, tmp_path):
    sweep_dir = copy(finished, tmp_path)
    study = load_study(sweep_dir)
    orphan = study.ask()  # what a controller killed right after creating a trial leaves
    assert orphan.params == {} and orphan.number == 2

    proc = run_sweep(sweep_dir, *BASE)  # the same command: n_trials=2 already ran
    assert proc.returncode == 0, output(proc)
    trials = load_study(sweep_dir).get_trials()
    assert trials[2].state == TrialState.FAIL and trials[2].user_attrs["incomplete"] is True
    assert len(launched(sweep_dir)) == 2
    assert trial_dirs(sweep_dir) == [0, 1]  # nothing trained the defaults
    df = pd.read_csv(sweep_dir / "experiment_df.csv")
    row = df[df.trial == 2].iloc[0]
    assert pd.isna(row["rank"]) and pd.isna(row["objective"])
    assert "never launched" in row["note"]
    assert sorted(df["rank"].dropna()) == [1, 2]


def test_a_changed_space_is_refused_with_one_line(finished, tmp_path):
    sweep_dir = copy(finished, tmp_path)
    before = (sweep_dir / "study.journal").read_bytes()
    changed = [a for a in BASE if a != LR] + ["algo.lr=choice(1e-4, 3e-4)"]
    proc = run_sweep(sweep_dir, *changed)
    assert proc.returncode == 2, output(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rlhp: error: "), output(proc)
    assert "algo.lr was tag(log, interval(" in lines[0] and "hydra.sweep.dir" in lines[0]
    assert (sweep_dir / "study.journal").read_bytes() == before


def files(sweep_dir: Path) -> dict[Path, bytes]:
    """Every file of a sweep dir but the controller's lock, with its bytes."""
    return {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file() and "lock" not in p.name}


def refused(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, output(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rlhp: error: "), output(proc)
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.parametrize(
    "override, key",
    [
        ("env.max_frame=1500", "env.max_frame"),
        ("meta.search_scheduler={grace_period: 500, reduction_factor: 2}", "meta.search_scheduler"),
        ("algo.gamma=0.9", "algo.gamma"),
    ],
)
def test_a_changed_setting_is_refused_and_the_first_command_finishes(
    finished, tmp_path, override, key
):
    sweep_dir = copy(finished, tmp_path)
    before = files(sweep_dir)
    changed = [a for a in BASE if not a.startswith(override.split("=")[0] + "=")] + [override]
    refused(run_sweep(sweep_dir, *changed), key, "first launch", "hydra.sweep.dir")
    assert files(sweep_dir) == before
    if key != "env.max_frame":
        return
    proc = run_sweep(sweep_dir, *BASE)  # the settings it began with: nothing to run again
    assert proc.returncode == 0, output(proc)
    assert [t.state for t in launched(sweep_dir)] == [TrialState.COMPLETE] * 2


@pytest.mark.parametrize("change", ["study_name", "journal_deleted", "journal_and_pin_deleted"])
def test_a_sweep_dir_never_takes_another_study(finished, tmp_path, change):
    """Its trial folders keep their results: no other study resumes from them."""
    sweep_dir = copy(finished, tmp_path)
    extra = ["hydra.sweeper.study_name=second"] if change == "study_name" else []
    if change != "study_name":
        (sweep_dir / "study.journal").unlink()
    if change == "journal_and_pin_deleted":
        (sweep_dir / "sweep.yaml").unlink()
    before = files(sweep_dir)
    words = {"study_name": "'second'", "journal_deleted": "gone"}.get(change, "trial folders 0-1")
    refused(run_sweep(sweep_dir, *BASE, *extra), words, "hydra.sweep.dir")
    assert files(sweep_dir) == before


def test_a_running_trial_whose_folder_holds_other_values_is_never_resumed_from(finished, tmp_path):
    sweep_dir = copy(finished, tmp_path)
    study = load_study(sweep_dir)
    study.enqueue_trial({"algo.lr": 5e-4})
    trial = study.ask({"algo.lr": optuna.distributions.FloatDistribution(1e-4, 1e-3, log=True)})
    folder = sweep_dir / str(trial.number)
    shutil.copytree(sweep_dir / "0", folder)  # trial 0's folder, results and all
    (folder / ".hydra" / "overrides.yaml").write_text("- algo.lr=0.0002\n")
    result = (folder / "result.yaml").read_bytes()

    proc = run_sweep(sweep_dir, *BASE)
    assert proc.returncode == 0, output(proc)
    t = load_study(sweep_dir).trials[trial.number]
    assert t.state == TrialState.FAIL and "never resumed from" in t.user_attrs["error"]
    assert "algo.lr=0.0002, not 0.0005" in t.user_attrs["error"]
    assert (folder / "result.yaml").read_bytes() == result  # untouched, not recorded as trial 2's


def test_two_searches_on_one_database_stay_apart(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    args = [*TINY, "hydra.sweeper.n_trials=1", LR]
    for name in ("a", "b"):
        proc = run_sweep(tmp_path / name, *args, f"hydra.sweeper.storage={url}")
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, output(proc)
    names = sorted(optuna.get_all_study_names(url))
    assert names == [f"rlhp:{tmp_path / 'a'}", f"rlhp:{tmp_path / 'b'}"]
    for name in names:
        (trial,) = optuna.load_study(study_name=name, storage=url).trials
        assert trial.state == TrialState.COMPLETE
    for name in ("a", "b"):
        assert len(pd.read_csv(tmp_path / name / "experiment_df.csv")) == 1
    proc = run_sweep(tmp_path / "a", *args)  # resumed without the URL: sweep.yaml holds it
    assert proc.returncode == 0, output(proc)
    assert sorted(optuna.get_all_study_names(url)) == names
    assert not (tmp_path / "a" / "study.journal").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs at tmp_path/disk (root only)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def completed(sweep_dir: Path) -> int:
    return sum((sweep_dir / str(n) / "result.yaml").is_file() for n in trial_dirs(sweep_dir))


def test_a_full_disk_stops_with_one_line_and_the_same_command_resumes(small_disk, tmp_path):
    sweep_dir = small_disk / "sweep"
    overrides = one_at_a_time(4000, 4)
    proc = start_sweep(sweep_dir, *overrides, log=tmp_path / "full.log")
    try:
        wait_for(lambda: completed(sweep_dir) >= 1, proc, 300, "a complete trial")
        with open(small_disk / "filler", "wb", buffering=0) as f:  # the disk fills mid-sweep
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        proc.wait(timeout=300)
    finally:
        kill_group(proc)
    log = (tmp_path / "full.log").read_text()
    assert proc.returncode != 0, log
    assert "Traceback" not in log, log
    errors = [ln for ln in log.splitlines() if ln.startswith("rlhp: error: ")]
    assert len(errors) == 1 and "No space left on device" in errors[0], log

    (small_disk / "filler").unlink()
    again = run_sweep(sweep_dir, *overrides)
    assert again.returncode == 0, output(again)
    trials = launched(sweep_dir)
    assert len(trials) == 4
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs for t in trials]
    assert trial_dirs(sweep_dir) == sorted(t.number for t in trials)


def test_a_read_only_sweep_dir_ends_with_one_line(small_disk, finished):
    sweep_dir = small_disk / "sweep"
    shutil.copytree(finished, sweep_dir)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    more = [a for a in BASE if "n_trials" not in a] + ["hydra.sweeper.n_trials=3"]
    proc = run_sweep(sweep_dir, *more)
    assert proc.returncode != 0, output(proc)
    assert "Traceback" not in proc.stderr, output(proc)
    (line,) = error_lines(proc)
    assert "Read-only file system" in line, output(proc)


def trial_processes(sweep_dir: Path) -> list[int]:
    """Pids of the sweep's trial processes (submitit tasks), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "submitit.core._submit" in cmd and str(sweep_dir) in cmd:
            pids.append(int(entry.name))
    return pids


def test_killed_trials_fail_with_their_signal_and_the_search_still_analyses(tmp_path):
    """Both trials are SIGKILLed (with no retry): each fails naming signal 9, the second starts
    only after the first ended (one slot), and max_failure_rate stops the search after its
    analysis."""
    sweep_dir = tmp_path / "killed"
    more = ["hydra.sweeper.max_failure_rate=0.5", "hydra.sweeper.max_retries=0"]
    overrides = one_at_a_time(200000, 3, *more)
    proc = start_sweep(sweep_dir, *overrides, log=tmp_path / "killed.log")
    try:
        for number in (0, 1):
            metrics = sweep_dir / str(number) / "metrics.csv"
            wait_for(metrics.is_file, proc, 300, f"trial {number} training")
            wait_for(lambda: trial_processes(sweep_dir), proc, 60, "a trial process")
            for pid in trial_processes(sweep_dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # as the OOM killer does
        proc.wait(timeout=300)
    finally:
        kill_group(proc)
    log = (tmp_path / "killed.log").read_text()
    trials = load_study(sweep_dir).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL], log
    for t in trials:
        assert "killed by signal 9 (SIGKILL)" in t.user_attrs["error"], t.user_attrs
    assert trials[1].datetime_start >= trials[0].datetime_complete  # the slot was refilled
    assert proc.returncode == 2, log
    assert [ln for ln in log.splitlines() if ln.startswith("rlhp: error: ")][0].endswith(
        "see state.yaml"
    )
    df = pd.read_csv(sweep_dir / "experiment_df.csv")  # the analysis ran all the same
    assert df.note.str.contains("killed by signal 9").all()


def test_ctrl_c_ends_with_one_line_and_the_same_command_resumes(tmp_path):
    sweep_dir = tmp_path / "interrupted"
    overrides = one_at_a_time(6000, 3)
    proc = start_sweep(sweep_dir, *overrides, log=tmp_path / "ctrl_c.log")
    try:
        wait_for((sweep_dir / "0" / "metrics.csv").is_file, proc, 300, "trial 0 training")
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl+C in a terminal does
        proc.wait(timeout=300)
    finally:
        kill_group(proc)
    log = (tmp_path / "ctrl_c.log").read_text()
    assert proc.returncode == 130, log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
    assert log.strip().splitlines()[-1] == "rlhp: interrupted; run the same command to resume"
    assert (sweep_dir / "experiment_df.csv").is_file()  # the analysis of what ran
    interrupted = load_study(sweep_dir).get_trials()
    assert interrupted[0].state == TrialState.RUNNING  # not charged as a failure

    again = run_sweep(sweep_dir, *overrides)
    assert again.returncode == 0, output(again)
    trials = launched(sweep_dir)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert trial_dirs(sweep_dir) == [0, 1, 2]


def test_analyze_reads_a_journal_optuna_appended_onto_a_torn_line(finished, tmp_path):
    """What Optuna left before: a torn user attribute, the next record written onto it."""
    sweep_dir = copy(finished, tmp_path)
    path = sweep_dir / "study.journal"
    lines = path.read_bytes().splitlines(keepends=True)
    k = next(i for i, ln in enumerate(lines) if ln.startswith(b'{"op_code":8,'))
    path.write_bytes(b"".join(lines[:k]) + lines[k][:20] + b"".join(lines[k + 1 :]))
    plain = optuna.storages.journal.JournalFileBackend(str(path))
    with pytest.raises(ValueError):  # Optuna alone cannot read it
        optuna.load_study(study_name="rlhp", storage=optuna.storages.JournalStorage(plain))
    proc = run_cli("analyze", sweep_dir)
    assert proc.returncode == 0, output(proc)
    df = pd.read_csv(sweep_dir / "experiment_df.csv")
    assert sorted(df.state) == ["complete", "complete"]
