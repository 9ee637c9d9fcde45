"""Validation of a search that ran with hydra.sweeper.requeue=true on the real SLURM cluster: a
validation job cancelled mid-run is submitted again and resumes from its checkpoints; without
requeue it is a failed row."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _helpers import run_search, sacct
from sweep._cli import wait_for

pytestmark = pytest.mark.slurm


def frames(run_dir: Path) -> dict[int, list[int]]:
    """session -> the frames it logged (metrics.csv)."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {}
    return {s: list(f) for s, f in pd.read_csv(path).groupby("session")["frame"]}


def validation_jobs(sweep: Path) -> list[str]:
    """The SLURM jobs validation submitted (submitit's folders are named by job id), in order."""
    return sorted((p.name for p in (sweep / "validation" / ".submitit").glob("[0-9]*")), key=int)


@pytest.mark.parametrize("requeue", [True, False])
def test_cancelled_validation_job(slurm_env, tmp_path, requeue):
    sweep = tmp_path / "sweep"
    run_search(
        slurm_env,
        sweep,
        "env.max_frame=40000",
        "log_frequency=2000",
        "meta.search_scheduler=null",
        "meta.search_resources.gpu=0",
        "hydra.sweeper.n_trials=1",
        f"hydra.sweeper.requeue={str(requeue).lower()}",
    )
    run_dir = sweep / "validation" / "trial0"
    cli = [sys.executable, "-m", "rlhp.validate", str(sweep), "top_k=1", "max_session=2"]
    proc = subprocess.Popen(
        cli, env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: len(frames(run_dir).get(1, [])) >= 2, proc, 300, "both sessions to log")
        (first,) = validation_jobs(sweep)
        before = frames(run_dir)
        subprocess.run(["scancel", first], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    [row] = pd.read_csv(sweep / "validation.csv").to_dict("records")
    (state,) = [r["State"] for r in sacct(slurm_env, {first}) if "." not in r["JobID"]]
    assert state.startswith("CANCELLED"), state
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
    after = frames(run_dir)
    for session, seen in after.items():
        assert seen == sorted(set(seen)), seen  # resumed from its checkpoints: counted once
        assert seen[-1] >= 40000 and set(before[session]) <= set(seen)
