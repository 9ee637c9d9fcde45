"""Searches through the local SLURM cluster (the `slurm_env` fixture) and what they left."""

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml


def search(sweep_dir: Path, *overrides: str, preset: str = "ppo_cartpole") -> list[str]:
    """The command of a small ASHA search of CartPole, a SLURM job per trial."""
    return [
        sys.executable,
        "-m",
        "rlhp.train",
        "-m",
        f"+search={preset}",
        "+cluster=slurm",
        "hydra.launcher.partition=debug",
        f"hydra.sweep.dir={sweep_dir}",
        "meta.search_resources.mem_gb=1",
        "env.max_frame=4000",
        "log_frequency=500",
        "meta.search_scheduler={grace_period: 1000, reduction_factor: 2}",
        "hydra.sweeper.population=1",  # a job per trial (tests/slurm/test_batched_slurm.py: more)
        "hydra.sweeper.constraints=[]",  # trial numbers 0, 1, ... (no sample rejected)
        "hydra.sweeper.graphs=false",  # tests/analysis reads them
        *overrides,
    ]


def run_search(env: dict, sweep_dir: Path, *overrides: str) -> None:
    """Run the search to its end; it succeeds."""
    proc = subprocess.run(
        search(sweep_dir, *overrides), env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


# a long trial: seconds of training left once it has logged twice (when a test signals its job)
LONG = 24000
LONG_TRIAL = (f"env.max_frame={LONG}", "log_frequency=1000")


def start_search(
    env: dict, sweep_dir: Path, *overrides: str, preset: str = "ppo_cartpole"
) -> subprocess.Popen:
    """A search of long trials (LONG frames, logged every 1000) to preempt or cancel."""
    cmd = search(sweep_dir, *LONG_TRIAL, *overrides, preset=preset)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def job_id(run_dir: Path) -> str:
    """The SLURM job id Hydra recorded for a trial (or population) directory."""
    job = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())
    return job["hydra"]["job"]["id"]


def sacct(env: dict, job_ids: set[str]) -> list[dict]:
    """Accounting rows (job and steps) of the given jobs, once settled: sacct lags squeue by a
    few seconds, and until slurmdbd has a job's own record (steps can arrive first) it names the
    job `allocation`."""
    fmt = "JobID,JobName%40,State,ExitCode"
    for _ in range(20):
        out = subprocess.run(
            ["sacct", "-n", "-P", "-j", ",".join(sorted(job_ids)), f"--format={fmt}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        keys = ["JobID", "JobName", "State", "ExitCode"]
        rows = [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines()]
        settled = all(r["State"] not in ("RUNNING", "PENDING") for r in rows)
        if rows and settled and all(r["JobName"] != "allocation" for r in rows):
            return rows
        time.sleep(1)
    return rows


def assert_requeued(env: dict, job_id: str) -> None:
    """The job's accounting history shows it was requeued (or preempted) at least once."""
    history = subprocess.run(
        ["sacct", "-n", "-P", "-D", "-X", "-j", job_id, "--format=State"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert "REQUEUED" in history or "PREEMPTED" in history, history


def results(sweep_dir: Path) -> dict[int, dict]:
    out = {}
    for path in sweep_dir.glob("[0-9]*/result.yaml"):
        out[int(path.parent.name)] = yaml.safe_load(path.read_text())
    return out


def frames(run_dir: Path) -> list[int]:
    """The frames a trial logged (metrics.csv)."""
    path = run_dir / "metrics.csv"
    return pd.read_csv(path).frame.tolist() if path.exists() else []


def session_frames(run_dir: Path) -> dict[int, list[int]]:
    """session -> the frames it logged (metrics.csv)."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {}
    return {s: list(f) for s, f in pd.read_csv(path).groupby("session")["frame"]}


# one trial long enough for its validation run to be cancelled or preempted mid-run
ONE_LONG_TRIAL = (
    *LONG_TRIAL,
    "meta.search_scheduler=null",
    "meta.search_resources.gpu=0",
    "hydra.sweeper.n_trials=1",
)
