"""Ctrl+C on a search through the real SLURM cluster: every running trial job (a job per trial,
a host job of trials sharing a GPU, a population job) checkpoints and ends without being
requeued, the controller leaves with one line, and the same command finishes the search with
every frame counted once."""

import signal
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from _helpers import LONG, LONG_TRIAL, frames, search
from sweep._cli import default_sigint, load_study, wait_for

pytestmark = pytest.mark.slurm

INTERRUPTED = "rlhp: interrupted; run the same command to resume"
MODES = {
    "job": ["meta.search_resources.gpu=0"],
    "host": ["meta.search_resources.gpu=0.5"],
    "population": ["meta.search_resources.gpu=0", "hydra.sweeper.population=2"],
}


def sweep_jobs(sweep: Path) -> set[str]:
    """Every SLURM job the search submitted (submitit's folders are named by job id)."""
    return {p.name for p in (sweep / ".submitit").glob("[0-9]*")}


def queued(env: dict, job_ids: set[str]) -> dict[str, str]:
    """job id -> squeue state of those still in the queue."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%T"], env=env, capture_output=True, text=True, check=True
    ).stdout
    rows = (line.split("|") for line in out.split())
    return {job_id: state for job_id, state in rows if job_id in job_ids}


def history(env: dict, job_id: str) -> list[str]:
    """Every state the job went through (sacct -D: requeued runs too)."""
    return subprocess.run(
        ["sacct", "-n", "-P", "-D", "-X", "-j", job_id, "--format=State"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


@pytest.mark.parametrize("mode", list(MODES))
def test_ctrl_c_stops_every_job_and_the_same_command_resumes(slurm_env, tmp_path, mode):
    sweep = tmp_path / "sweep"
    cmd = search(
        sweep,
        *LONG_TRIAL,
        "meta.search_scheduler=null",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.max_concurrent=2",
        *MODES[mode],
    )
    proc = subprocess.Popen(
        cmd,
        env=slurm_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )

    def training() -> list[int]:
        return [n for n in range(3) if len(frames(sweep / str(n))) >= 2]

    try:
        wait_for(lambda: len(training()) >= 2, proc, 300, "two trials to log twice")
        running = training()
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1] == INTERRUPTED, err[-3000:]
    assert "Traceback" not in err, err[-3000:]

    jobs = sweep_jobs(sweep)
    assert jobs
    left = queued(slurm_env, jobs)
    assert set(left.values()) <= {"COMPLETING"}, left  # none left running or pending
    for job_id in jobs:
        assert "REQUEUED" not in history(slurm_env, job_id), job_id  # stopped, not requeued
    trials = {t.number: t for t in load_study(sweep).trials}
    before = {}
    for n in running:
        assert trials[n].state == optuna.trial.TrialState.RUNNING  # resumed by the same command
        assert list((sweep / str(n) / "checkpoints").glob("*.pt")), n
        assert not (sweep / str(n) / "result.yaml").exists()
        before[n] = frames(sweep / str(n))[-1]

    again = subprocess.run(cmd, env=slurm_env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = [t for t in load_study(sweep).trials if "rejected" not in t.user_attrs]
    assert len(trials) == 3
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    for n, frame in before.items():
        logged = frames(sweep / str(n))
        assert logged == sorted(set(logged)), logged  # each frame counted once
        assert frame in logged and logged[-1] >= LONG  # went on from its checkpoint
        result = yaml.safe_load((sweep / str(n) / "result.yaml").read_text())
        assert result["frame"] == logged[-1]
