"""Searches through a real SLURM cluster (slurm/cluster.sh: slurmctld, slurmd, slurmdbd, munge,
two fake GPUs): trials as jobs and job steps, GPU sharing, ASHA, preemption, cancellation."""

import subprocess
from collections import Counter

import optuna
import pandas as pd
import pytest
import torch
import yaml
from _helpers import LONG, assert_requeued, frames, job_id, results, run_search, sacct, start_search
from sweep._cli import load_study, wait_for

pytestmark = pytest.mark.slurm


def test_asha_search_shares_gpus(slurm_env, tmp_path):
    sweep = tmp_path / "sweep"
    run_search(
        slurm_env,
        sweep,
        "meta.search_resources.gpu=0.5",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.max_concurrent=4",
    )

    trials = load_study(sweep).trials
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


# DQN: 12k frames, 2k of them gradient steps (learning_starts 10k), still training when signalled
@pytest.mark.parametrize(
    "gpu, preset, max_frame", [(0.5, "ppo_cartpole", LONG), (0, "dqn_cartpole", 12000)]
)
def test_preempted_trial_resumes(slurm_env, tmp_path, gpu, preset, max_frame):
    """USR2 (SLURM's preemption / time-limit signal) on a running trial's job: it checkpoints,
    is requeued (submitit's requeue for a job per trial, a new host for shared GPUs), resumes,
    and completes with every frame and rung counted once; an off-policy trial resumes with its
    replay memory."""
    sweep = tmp_path / "sweep"
    no_asha = "meta.search_scheduler=null"
    gpus, budget = f"meta.search_resources.gpu={gpu}", f"env.max_frame={max_frame}"
    proc = start_search(
        slurm_env, sweep, gpus, budget, "hydra.sweeper.n_trials=1", no_asha, preset=preset
    )
    try:
        wait_for(lambda: len(frames(sweep / "0")) >= 2, proc, 300, "trial 0 to log twice")
        job = job_id(sweep / "0")
        if gpu:  # the host job runs the trial as a step
            job = subprocess.run(
                ["squeue", "-h", "-o", "%A", "-n", "rlhp_sweep_host"],
                env=slurm_env,
                capture_output=True,
                text=True,
            ).stdout.split()[0]
        before = frames(sweep / "0")[-1]
        subprocess.run(["scancel", "--signal=USR2", job], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    trial = load_study(sweep).trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    logged = frames(sweep / "0")
    assert logged == sorted(set(logged)), logged  # nothing counted twice
    assert logged[-1] >= max_frame and before in logged
    result = yaml.safe_load((sweep / "0" / "result.yaml").read_text())
    assert result["frame"] == logged[-1]
    if gpu:  # a new host job resumed the trial
        assert result["where"]["slurm_job_id"] != job
    else:  # submitit requeued the same job
        assert_requeued(slurm_env, job)
    if preset.startswith("dqn"):  # every frame of both runs in the replay memory, not a fresh one
        state = torch.load(sweep / "0" / "checkpoints" / "session0.pt", weights_only=False)
        num_envs = yaml.safe_load((sweep / "0" / ".hydra" / "config.yaml").read_text())["env"][
            "num_envs"
        ]
        assert int(state["agent"]["memory"]["steps"]) * num_envs == state["frame"] == logged[-1]


def test_cancelled_trial_fails_and_sweep_finishes(slurm_env, tmp_path):
    sweep = tmp_path / "sweep"
    proc = start_search(
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
        wait_for(lambda: len(frames(sweep / "1")) >= 1, proc, 300, "trial 1 to log")
        subprocess.run(["scancel", job_id(sweep / "1")], env=slurm_env, check=True)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    trials = {t.number: t for t in load_study(sweep).trials}
    assert trials[1].state == optuna.trial.TrialState.FAIL
    assert trials[1].user_attrs["error"]
    assert trials[0].state == trials[2].state == optuna.trial.TrialState.COMPLETE
