"""A batched search through the real SLURM cluster: each population is one job that trains
several trials; preempted, the whole population is requeued and every member resumes."""

import subprocess
from collections import Counter

import optuna
import pytest
import yaml
from _helpers import LONG, assert_requeued, frames, job_id, results, run_search, sacct, start_search
from sweep._cli import load_study, wait_for

pytestmark = pytest.mark.slurm


def test_population_search_runs_trials_as_members_of_few_jobs(slurm_env, tmp_path):
    sweep = tmp_path / "sweep"
    run_search(
        slurm_env,
        sweep,
        "hydra.sweeper.population=3",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.max_concurrent=2",
        "meta.search_resources.gpu=0",
    )
    trials = [t for t in load_study(sweep).trials if "rejected" not in t.user_attrs]
    assert len(trials) == 6
    states = Counter(t.state for t in trials)
    assert states[optuna.trial.TrialState.PRUNED] + states[optuna.trial.TrialState.COMPLETE] == 6
    jobs = {n: r["where"]["slurm_job_id"] for n, r in results(sweep).items()}
    assert set(jobs) == {t.number for t in trials} and all(jobs.values())
    per_job = Counter(jobs.values())
    assert len(per_job) < 6 and max(per_job.values()) >= 2, per_job  # trials shared jobs
    rows = sacct(slurm_env, set(per_job))
    assert all(r["State"] == "COMPLETED" for r in rows if "." not in r["JobID"]), rows


def test_preempted_population_is_requeued_and_every_member_resumes(slurm_env, tmp_path):
    sweep = tmp_path / "sweep"
    proc = start_search(
        slurm_env,
        sweep,
        "meta.search_scheduler=null",
        "meta.search_resources.gpu=0",
        "hydra.sweeper.population=2",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_concurrent=1",
    )

    def members() -> list[int]:  # the population's trials (a constraint may reject a sample)
        inbox = sweep / "populations" / "0" / "inbox.jsonl"
        lines = inbox.read_text().splitlines() if inbox.exists() else []
        return [yaml.safe_load(line)["trial"] for line in lines]

    def logged() -> bool:
        return len(members()) == 2 and all(len(frames(sweep / str(n))) >= 2 for n in members())

    try:
        wait_for(logged, proc, 300, "both members to log twice")
        job = job_id(sweep / "populations" / "0")
        before = {n: frames(sweep / str(n))[-1] for n in members()}
        subprocess.run(["scancel", "--signal=USR2", job], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    trials = [t for t in load_study(sweep).trials if "rejected" not in t.user_attrs]
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for n in before:
        logged = frames(sweep / str(n))
        assert logged == sorted(set(logged)) and logged[-1] >= LONG and before[n] in logged
    assert_requeued(slurm_env, job)
