"""Batched search through the real CLI: population jobs train many trials each, grouped by
structure, refilled as ASHA stops members; sessions in lockstep; SIGKILL of the controller and
of a population job."""

import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from _members import assert_asha_judged_the_mean_of_two_sessions, decisions
from optuna.trial import TrialState

from ._cli import (
    assigned,
    kill_group,
    load_study,
    output,
    run_sweep,
    start_sweep,
    trial_config,
    trial_dirs,
    wait_for,
)

BASE = [
    "algo=ppo",
    "env=cartpole",
    "env.max_frame=2048",
    "log_frequency=512",
    "hydra.sweeper.sampler.seed=0",
    "algo.lr=tag(log, interval(1e-4, 3e-3))",
    "algo.gamma=interval(0.9, 0.999)",
]
ASHA = ["+meta.search_scheduler={grace_period: 512, reduction_factor: 2}"]


def test_one_population_job_trains_every_trial_and_refills_stopped_members(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(
        sweep,
        *BASE,
        *ASHA,
        "hydra.sweeper.n_trials=8",
        "hydra.sweeper.population=3",
        "hydra.sweeper.max_concurrent=1",
        "hydra.sweeper.constraints=['algo.lr > 2e-3']",
    )
    assert proc.returncode == 0, output(proc)
    jobs = assigned(sweep)
    assert list(jobs) == [0]  # one process trained them all
    study = load_study(sweep)
    launched = [t for t in study.trials if "rejected" not in t.user_attrs]
    rejected = [t for t in study.trials if "rejected" in t.user_attrs]
    assert len(launched) == 8 and sorted(jobs[0]) == sorted(t.number for t in launched)
    assert all(t.params["algo.lr"] > 2e-3 for t in rejected)
    assert {t.state for t in launched} <= {TrialState.COMPLETE, TrialState.PRUNED}
    stopped = [t for t in launched if t.state == TrialState.PRUNED]
    assert stopped, "ASHA stopped no trial"
    # each member is an ordinary trial: its folder, config, metrics and result
    for t in launched:
        run_dir = sweep / str(t.number)
        assert trial_config(sweep, t.number).algo.lr == pytest.approx(t.params["algo.lr"])
        df = pd.read_csv(run_dir / "metrics.csv")
        assert df.frame.max() == t.user_attrs["frame"]
        assert (run_dir / "session0").is_dir() and (run_dir / "result.yaml").is_file()
        if t.state == TrialState.PRUNED:
            assert t.user_attrs["stopped_at"] == df.frame.max() < 2048
    # 8 trials through 3 member slots (+1 queued): later trials took slots stopped ones freed
    first_done = min(t.datetime_complete for t in launched)
    assert sum(t.datetime_start > first_done for t in launched) >= 8 - 4
    # ASHA decided on each trial by its own number
    assert {int(d["trial"]) for d in decisions(sweep)} <= {t.number for t in launched}
    df = pd.read_csv(sweep / "experiment_df.csv")
    assert len(df[df.state != "rejected"]) == 8


@pytest.mark.parametrize("sampler", ["tpe", "grid"])
def test_trials_of_different_structure_never_share_a_population(sampler, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(
        sweep,
        *BASE[:4],
        "algo.time_horizon=choice(16, 32)",
        "algo.lr=choice(3e-4, 1e-3, 3e-3)",
        f"hydra/sweeper/sampler={sampler}",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.population=2",
        "hydra.sweeper.max_concurrent=2",
    )
    assert proc.returncode == 0, output(proc)
    assert "ExperimentalWarning" not in proc.stderr  # PartialFixedSampler's, silenced
    jobs = assigned(sweep)
    assert sum(len(v) for v in jobs.values()) == 6 == len(trial_dirs(sweep))
    # a structure group is the 2 trials (its population) a job is given before it retires and
    # the job opens another; with a grid nothing retires, so a job keeps its one structure
    for trials in jobs.values():
        size = len(trials) if sampler == "grid" else 2
        for group in (trials[i : i + size] for i in range(0, len(trials), size)):
            horizons = {trial_config(sweep, n).algo.time_horizon for n in group}
            assert len(horizons) == 1, (jobs, horizons)
    kinds = {trial_config(sweep, n).algo.time_horizon for n in trial_dirs(sweep)}
    study = load_study(sweep)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    if sampler == "grid":
        assert kinds == {16, 32}  # every grid point ran, in populations of its own kind


def test_sessions_in_lockstep_report_their_mean_to_asha(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(
        sweep,
        *BASE,
        *ASHA,
        "max_session=2",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.population=2",
        "hydra.sweeper.max_concurrent=1",
    )
    assert proc.returncode == 0, output(proc)
    assert_asha_judged_the_mean_of_two_sessions(sweep)


def results(sweep: Path) -> int:
    return sum((sweep / str(n) / "result.yaml").exists() for n in trial_dirs(sweep))


def test_sigkill_of_the_controller_resumes_to_exactly_n_trials(tmp_path):
    sweep, log = tmp_path / "sweep", tmp_path / "log"
    args = [*BASE[:2], "env.max_frame=8192", "log_frequency=1024", *BASE[4:]]
    args += ["hydra.sweeper.n_trials=6", "hydra.sweeper.population=2"]
    args += ["hydra.sweeper.max_concurrent=1"]
    proc = start_sweep(sweep, *args, log=log)
    try:
        wait_for(lambda: results(sweep) >= 1, proc, 240, "a complete trial", log)
        checkpoints = list(sweep.glob("*/checkpoints/session0.pt"))
        assert checkpoints
    finally:
        kill_group(proc)  # the controller and its population job, mid-training
    unfinished = [n for n in trial_dirs(sweep) if not (sweep / str(n) / "result.yaml").exists()]
    again = run_sweep(sweep, *args)
    assert again.returncode == 0, output(again)
    study = load_study(sweep)
    assert len(study.trials) == 6 and all(t.state == TrialState.COMPLETE for t in study.trials)
    assert trial_dirs(sweep) == list(range(6))
    for n in unfinished:  # resumed from their checkpoints: each frame logged once
        df = pd.read_csv(sweep / str(n) / "metrics.csv")
        assert df.frame.is_unique and df.frame.max() == 8192


def test_a_killed_population_job_fails_its_trials_and_the_search_goes_on(tmp_path):
    sweep, log = tmp_path / "sweep", tmp_path / "log"
    args = [*BASE[:2], "env.max_frame=8192", "log_frequency=1024", *BASE[4:]]
    args += ["hydra.sweeper.n_trials=5", "hydra.sweeper.population=2"]
    args += ["hydra.sweeper.max_concurrent=1", "hydra.sweeper.max_failure_rate=1.0"]
    args += ["hydra.sweeper.max_retries=0"]  # test_process_death_cli: they run again by default
    proc = start_sweep(sweep, *args, log=log)
    try:
        wait_for(
            lambda: list(sweep.glob("*/checkpoints/session0.pt")), proc, 240, "a checkpoint", log
        )
        pids = subprocess.run(  # the population job: a submitit job process of this sweep
            ["pgrep", "-g", str(proc.pid), "-f", "submitit.core._submit"],
            capture_output=True,
            text=True,
        ).stdout.split()
        workers = [int(p) for p in pids]
        assert workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)  # as the OOM killer would
        proc.wait(timeout=480)
    finally:
        kill_group(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]
    study = load_study(sweep)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("killed by signal 9" in t.user_attrs["error"] for t in failed)
    assert len(study.trials) == 5
    assert any(t.state == TrialState.COMPLETE for t in study.trials)
