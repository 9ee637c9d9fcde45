"""hydra.sweeper.requeue=true on the real SLURM cluster: a trial job or a validation job cancelled
mid-run (scancel) is submitted again and resumes from its checkpoints; without requeue the
validation run is a failed row (tests/slurm/test_slurm.py: a failed trial)."""

import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from _helpers import LONG, frames, job_id, sacct, session_frames, start_search
from sweep._cli import load_study, wait_for

pytestmark = pytest.mark.slurm


def validation_jobs(sweep: Path) -> list[str]:
    """The SLURM jobs validation submitted (submitit's folders are named by job id), in order."""
    return sorted((p.name for p in (sweep / "validation" / ".submitit").glob("[0-9]*")), key=int)


def cancelled_state(env: dict, job: str) -> str:
    (state,) = [r["State"] for r in sacct(env, {job}) if "." not in r["JobID"]]
    return state


def test_cancelled_trial_job_is_submitted_again(slurm_env, tmp_path):
    sweep = tmp_path / "sweep"
    proc = start_search(
        slurm_env,
        sweep,
        "meta.search_scheduler=null",
        "meta.search_resources.gpu=0",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.requeue=true",
    )
    try:
        wait_for(lambda: len(frames(sweep / "0")) >= 2, proc, 300, "trial 0 to log twice")
        first = job_id(sweep / "0")
        before = frames(sweep / "0")[-1]
        subprocess.run(["scancel", first], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert load_study(sweep).trials[0].state == optuna.trial.TrialState.COMPLETE
    assert cancelled_state(slurm_env, first).startswith("CANCELLED")
    assert job_id(sweep / "0") != first  # ran again as a new job
    logged = frames(sweep / "0")
    assert logged == sorted(set(logged)) and before in logged and logged[-1] >= LONG


@pytest.mark.parametrize("requeue", [True, False])
def test_cancelled_validation_job(slurm_env, long_trial_search, tmp_path, requeue):
    sweep = long_trial_search(tmp_path / "sweep", requeue)
    run_dir = sweep / "validation" / "trial0"
    cli = [sys.executable, "-m", "rlhp.validate", str(sweep), "top_k=1", "max_session=2"]
    proc = subprocess.Popen(
        cli, env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(
            lambda: len(session_frames(run_dir).get(1, [])) >= 2, proc, 300, "both sessions to log"
        )
        (first,) = validation_jobs(sweep)
        before = session_frames(run_dir)
        subprocess.run(["scancel", first], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    [row] = pd.read_csv(sweep / "validation.csv").to_dict("records")
    assert cancelled_state(slurm_env, first).startswith("CANCELLED")
    if not requeue:
        assert proc.returncode == 1, out[-2000:] + err[-2000:]
        assert validation_jobs(sweep) == [first]
        assert row["state"] == "failed" and pd.isna(row["validated_mean"]), row
        return

    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    jobs = validation_jobs(sweep)
    assert jobs[0] == first and len(jobs) == 2, jobs  # submitted again as a job of its own
    assert f"SLURM job {first} ended without a result" in out, out[-2000:]
    assert row["state"] == "complete" and row["validated_sessions"] == 2, row
    result = yaml.safe_load((run_dir / "result.yaml").read_text())
    assert result["where"]["slurm_job_id"] == jobs[1]
    after = session_frames(run_dir)
    for session, seen in after.items():
        assert seen == sorted(set(seen)), seen  # resumed from its checkpoints: counted once
        assert seen[-1] >= LONG and set(before[session]) <= set(seen)
