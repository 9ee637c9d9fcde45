"""Searches through a real SLURM cluster (slurm/cluster.sh: slurmctld, slurmd, slurmdbd, munge,
two fake GPUs): trials as jobs and job steps, GPU sharing, ASHA, preemption, cancellation."""

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "slurm" / "cluster.sh"

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_env():
    """SLURM_CONF of a running local cluster; started here (and stopped after) if none runs."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = False
    if "SLURM_CONF" not in env:
        knobs = dict(env, SLURM_LOCAL_CPUS="8", SLURM_LOCAL_GPUS="2", SLURM_LOCAL_CLEAN="1")
        subprocess.run(["bash", str(CLUSTER), "start"], env=knobs, check=True)
        started = True
        out = subprocess.run(["bash", str(CLUSTER), "env"], capture_output=True, text=True)
        env["SLURM_CONF"] = out.stdout.strip().split("=", 1)[1]
    yield env
    if started:
        subprocess.run(["bash", str(CLUSTER), "stop"], env=env, check=False)


def search(sweep_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rlhp.train",
        "-m",
        "+search=ppo_cartpole",
        "+cluster=slurm",
        "hydra.launcher.partition=debug",
        f"hydra.sweep.dir={sweep_dir}",
        "meta.search_resources.mem_gb=1",
        "env.max_frame=4000",
        "log_frequency=500",
        "meta.search_scheduler={grace_period: 1000, reduction_factor: 2}",
        "hydra.sweeper.population=1",  # a job per trial (tests/slurm/test_batched_slurm.py: more)
        "hydra.sweeper.constraints=[]",  # trial numbers 0, 1, ... (no sample rejected)
        *overrides,
    ]


def study(sweep_dir: Path) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(sweep_dir / "study.journal"))
    storage = optuna.storages.JournalStorage(backend)
    return optuna.load_study(study_name="rlhp", storage=storage)


def sacct(env: dict, job_ids: set[str]) -> list[dict]:
    """Accounting rows (job and steps) of the given jobs; sacct lags squeue by a few seconds."""
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
        if rows and all(r["State"] not in ("RUNNING", "PENDING") for r in rows):
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


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_asha_search_shares_gpus(slurm_env, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = search(
        sweep,
        "meta.search_resources.gpu=0.5",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.max_concurrent=4",
    )
    proc = subprocess.run(cmd, env=slurm_env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    trials = study(sweep).trials
    assert len(trials) == 6
    states = Counter(t.state for t in trials)
    assert states[optuna.trial.TrialState.PRUNED] >= 1, states  # ASHA stopped some
    assert states[optuna.trial.TrialState.COMPLETE] >= 1, states

    where = {n: r["where"] for n, r in results(sweep).items()}
    assert set(where) == {t.number for t in trials}
    # each trial ran as a step of a host job that holds one (fake) GPU
    assert all(w["slurm_job_id"] and w["cuda_visible_devices"] for w in where.values())
    per_gpu = Counter((w["slurm_job_id"], w["cuda_visible_devices"]) for w in where.values())
    assert max(per_gpu.values()) >= 2, per_gpu  # several trials on one GPU
    rows = sacct(slurm_env, {w["slurm_job_id"] for w in where.values()})
    steps = {r["JobName"] for r in rows}
    assert {f"rlhp_trial{n}" for n in where} <= steps
    assert all(r["State"] == "COMPLETED" for r in rows if r["JobName"].startswith("rlhp_trial"))

    rungs = pd.read_json(sweep / "asha" / "rungs.jsonl", lines=True)
    assert not rungs.duplicated(["trial", "rung"]).any()
    stopped = {t.number for t in trials if t.state == optuna.trial.TrialState.PRUNED}
    assert stopped == {int(t) for t in rungs[rungs.stop].trial}


def _start_search(slurm_env, sweep: Path, *overrides: str) -> subprocess.Popen:
    cmd = search(sweep, "env.max_frame=40000", "log_frequency=2000", *overrides)
    return subprocess.Popen(cmd, env=slurm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _frames(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.csv"
    return pd.read_csv(path).frame.tolist() if path.exists() else []


@pytest.mark.parametrize("gpu", [0.5, 0])
def test_preempted_trial_resumes(slurm_env, tmp_path, gpu):
    """USR2 (SLURM's preemption / time-limit signal) on a running trial's job: it checkpoints,
    is requeued (submitit's requeue for a job per trial, a new host for shared GPUs), resumes,
    and completes with every frame and rung counted once."""
    sweep = tmp_path / "sweep"
    no_asha = "meta.search_scheduler=null"
    proc = _start_search(
        slurm_env, sweep, f"meta.search_resources.gpu={gpu}", "hydra.sweeper.n_trials=1", no_asha
    )
    try:
        wait_for(lambda: len(_frames(sweep / "0")) >= 2, 300, "trial 0 to log twice")
        job = yaml.safe_load((sweep / "0" / ".hydra" / "hydra.yaml").read_text())
        job_id = job["hydra"]["job"]["id"]
        if gpu:  # the host job runs the trial as a step
            job_id = subprocess.run(
                ["squeue", "-h", "-o", "%A", "-n", "rlhp_host"],
                env=slurm_env,
                capture_output=True,
                text=True,
            ).stdout.split()[0]
        before = _frames(sweep / "0")[-1]
        subprocess.run(["scancel", "--signal=USR2", job_id], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    trial = study(sweep).trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    frames = _frames(sweep / "0")
    assert frames == sorted(set(frames)), frames  # nothing counted twice
    assert frames[-1] >= 40000 and before in frames
    result = yaml.safe_load((sweep / "0" / "result.yaml").read_text())
    assert result["frame"] == frames[-1]
    if gpu:  # a new host job resumed the trial
        assert result["where"]["slurm_job_id"] != job_id
    else:  # submitit requeued the same job
        assert_requeued(slurm_env, job_id)


def test_cancelled_trial_fails_and_sweep_finishes(slurm_env, tmp_path):
    sweep = tmp_path / "sweep"
    proc = _start_search(
        slurm_env,
        sweep,
        "meta.search_resources.gpu=0",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.max_concurrent=3",
        "hydra.sweeper.max_failure_rate=0.5",
        "meta.search_scheduler=null",
        "env.max_frame=8000",
    )
    try:
        wait_for(lambda: len(_frames(sweep / "1")) >= 1, 300, "trial 1 to log")
        job = yaml.safe_load((sweep / "1" / ".hydra" / "hydra.yaml").read_text())
        subprocess.run(["scancel", job["hydra"]["job"]["id"]], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    trials = {t.number: t for t in study(sweep).trials}
    assert trials[1].state == optuna.trial.TrialState.FAIL
    assert trials[1].user_attrs["error"]
    assert trials[0].state == trials[2].state == optuna.trial.TrialState.COMPLETE
