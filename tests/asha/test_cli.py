"""ASHA through the real sweep CLI: settings reach the coordinator, NaN and diverged trials."""

import json
import math

import pandas as pd
from optuna.trial import TrialState
from sweep._cli import load_study, output, run_sweep, trial_dirs


def test_brackets_that_cannot_work_are_refused_before_launch(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # grace 10000 below ppo_cartpole's max_frame 30000 leaves one rung, so one bracket at most
    proc = run_sweep(
        sweep_dir,
        "+search=ppo_cartpole",
        "meta.search_scheduler.grace_period=10000",
        "meta.search_scheduler.reduction_factor=3",
        "+meta.search_scheduler.brackets=5",
    )
    assert proc.returncode != 0, output(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output(proc)
    assert lines[0].startswith("rlhp: error: meta.search_scheduler: brackets"), output(proc)
    assert "[1, 1] (the rungs [10000] below max_t 30000), got 5" in lines[0], output(proc)
    assert not sweep_dir.exists() or trial_dirs(sweep_dir) == []
    assert not (sweep_dir / "study.journal").exists()


def test_nan_is_not_judged_and_a_diverged_trial_fails(tmp_path):
    # Pendulum episodes last 200 steps on 4 envs: no episode ends before frame 800, so the
    # reports at 256, 512 and 768 have no value; rungs at 256, 512 and 1024.
    sweep_dir = tmp_path / "sweep"
    proc = run_sweep(
        sweep_dir,
        "env=pendulum",
        "env.max_frame=2048",
        "log_frequency=256",
        "algo.time_horizon=64",
        "meta.search_scheduler={grace_period: 256, reduction_factor: 2, lock: symlink}",
        "hydra/sweeper/sampler=grid",
        "algo.val_loss_coef=choice(0.5, 0.25, 3e38)",  # 3e38: a non-finite loss, that trial fails
        "hydra.sweeper.max_concurrent=1",
    )
    assert proc.returncode == 0, output(proc)
    trials = {t.params["algo.val_loss_coef"]: t for t in load_study(sweep_dir).get_trials()}
    assert trials[3e38].state == TrialState.FAIL
    assert "loss" in trials[3e38].user_attrs["error"]
    decisions = pd.read_json(sweep_dir / "asha" / "decisions.jsonl", lines=True)
    assert decisions.value.notna().all()
    for number in (trials[0.5].number, trials[0.25].number):
        metrics = pd.read_csv(sweep_dir / str(number) / "metrics.csv")
        nan_at = metrics.frame[metrics.total_reward_ma.isna()]
        assert set(nan_at) >= {256, 512, 768}  # reports without a value, at two rungs
        first = decisions[decisions.trial == number].iloc[0]
        assert (first.rung, first.frame) == (1024, 1024)  # judged at its first value
        assert math.isfinite(first.value)
    rungs = [json.loads(line) for line in (sweep_dir / "asha" / "rungs.jsonl").open()]
    assert {r["rung"] for r in rungs} <= {1024}  # nothing recorded at 256 or 512
    # the symlink lock, from meta.search_scheduler.lock, was used and released
    assert not (sweep_dir / "asha" / "lock").exists()
    assert not (sweep_dir / "asha" / "lock.symlink").is_symlink()
