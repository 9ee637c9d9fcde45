"""Validation after a search on the real SLURM cluster: the re-runs are SLURM jobs with a trial's
resources, both at the end of the search and from `python -m rlhp.validate` later (--local runs
them here); a preempted one is requeued and resumes from its checkpoints."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _helpers import LONG, assert_requeued, results, run_search, sacct, session_frames
from sweep._cli import wait_for

pytestmark = pytest.mark.slurm


def validation_jobs(sweep: Path) -> dict[int, str | None]:
    """trial -> the SLURM job id its validation run reported in result.yaml."""
    out = {}
    for path in sweep.glob("validation/trial*/result.yaml"):
        where = yaml.safe_load(path.read_text())["where"]
        out[int(path.parent.name.removeprefix("trial"))] = where["slurm_job_id"]
    return out


def allocations(env: dict, job_ids: set[str]) -> dict[str, str]:
    """job id -> partition|AllocTRES|time limit (minutes) of each job."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-j", ",".join(sorted(job_ids))]
        + ["--format=JobID,Partition,AllocTRES,TimelimitRaw"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split("|", 1)[0]: line.split("|", 1)[1] for line in out.splitlines()}


def validate_cli(env: dict, sweep: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rlhp.validate", str(sweep), "max_session=2", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def test_validation_runs_are_slurm_jobs(slurm_env, tmp_path):
    sweep = tmp_path / "sweep"
    run_search(
        slurm_env,
        sweep,
        "meta.search_scheduler=null",
        "meta.search_resources.gpu=0.5",
        "hydra.sweeper.population=1",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.validate.top_k=2",
        "hydra.sweeper.validate.max_session=2",
    )

    table = pd.read_csv(sweep / "validation.csv")
    assert len(table) == 2 and table["validated_mean"].notna().all(), table
    validated = set(table["trial"])
    jobs = validation_jobs(sweep)
    assert set(jobs) == validated and all(jobs.values()), jobs
    trial_jobs = {r["where"]["slurm_job_id"] for r in results(sweep).values()}
    assert not set(jobs.values()) & trial_jobs  # jobs of their own, not the trials' hosts
    rows = [r for r in sacct(slurm_env, set(jobs.values())) if "." not in r["JobID"]]
    assert {r["JobID"]: r["JobName"] for r in rows} == {
        jobs[n]: f"rlhp_validate{n}" for n in validated
    }
    assert all(r["State"] == "COMPLETED" for r in rows), rows
    # a trial's resources: partition, 1 CPU, 1 GB, time_min 240, gpu 0.5 -> one whole GPU
    for alloc in allocations(slurm_env, set(jobs.values())).values():
        partition, tres, minutes = alloc.split("|")
        assert partition == "debug" and minutes == "240", alloc
        assert {"cpu=1", "mem=1G", "gres/gpu=1"} <= set(tres.split(",")), alloc

    # later, from the command line: one more configuration, also as a SLURM job, with its own
    # partition and time limit
    launcher = ("hydra.launcher.partition=urgent", "hydra.launcher.timeout_min=30")
    proc = validate_cli(slurm_env, sweep, "top_k=3", *launcher)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 to run (2 done before), 1 at once as SLURM jobs" in proc.stdout
    again = validation_jobs(sweep)
    (new,) = set(again) - validated
    assert {n: again[n] for n in validated} == jobs  # not run again
    assert again[new] and again[new] not in set(jobs.values()) | trial_jobs
    rows = [r for r in sacct(slurm_env, {again[new]}) if "." not in r["JobID"]]
    assert [(r["JobName"], r["State"]) for r in rows] == [(f"rlhp_validate{new}", "COMPLETED")]
    partition, tres, minutes = allocations(slurm_env, {again[new]})[again[new]].split("|")
    assert (partition, minutes) == ("urgent", "30") and "gres/gpu=1" in tres
    assert len(pd.read_csv(sweep / "validation.csv")) == 3

    # --local: the same run in a process here
    shutil.rmtree(sweep / "validation" / f"trial{new}")
    proc = validate_cli(slurm_env, sweep, "top_k=3", "--local")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "SLURM" not in proc.stdout
    assert validation_jobs(sweep)[new] is None


def test_preempted_validation_run_is_requeued_and_resumes(slurm_env, long_trial_search, tmp_path):
    sweep = long_trial_search(tmp_path / "sweep", False)  # test_requeue_slurm.py's search too
    run_dir = sweep / "validation" / "trial0"
    cli = [sys.executable, "-m", "rlhp.validate", str(sweep), "top_k=1", "max_session=2"]
    proc = subprocess.Popen(cli, env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(
            lambda: len(session_frames(run_dir).get(1, [])) >= 2,
            proc,
            300,
            "both sessions to log twice",
        )
        (job_id,) = [p.name for p in (sweep / "validation" / ".submitit").glob("[0-9]*")]
        before = session_frames(run_dir)
        subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, out.decode()[-2000:] + err.decode()[-2000:]
    log = (run_dir / "validate.log").read_text()
    assert "checkpointed at frame" in log and log.count("$ ") == 2  # stopped, started again
    after = session_frames(run_dir)
    for session, seen in after.items():
        assert seen == sorted(set(seen)), seen  # resumed: nothing counted twice
        assert seen[-1] >= LONG and set(before[session]) <= set(seen)
    result = yaml.safe_load((run_dir / "result.yaml").read_text())
    assert result["where"]["slurm_job_id"] == job_id and len(result["sessions"]) == 2
    assert_requeued(slurm_env, job_id)
    assert pd.read_csv(sweep / "validation.csv")["validated_mean"].notna().all()
