"""DQN and SAC on the one engine, through the real CLI: a batched search whose trials' sessions
train in lockstep (ASHA sees the mean over their seeds) and whose stopped members' slots are
refilled; a DQN population killed with SIGKILL resumes every member with its replay memory."""

import numpy as np
import pandas as pd
import pytest
import torch
from _members import assert_asha_judged_the_mean_of_two_sessions, kill_once_checkpointed
from optuna.trial import TrialState
from sweep._cli import load_study, output, run_sweep, trial_dirs

ASHA = "+meta.search_scheduler={grace_period: 500, reduction_factor: 2}"
# the tuned configs (conf/tuned) searched over per-member keys: one population job
SEARCHES = {
    "dqn_cartpole": [
        "algo=dqn",
        "env=cartpole",
        "algo.learning_starts=200",
        "algo.training_frequency=100",
        "algo.memory_size=2000",
        "algo.hid_layers=[32]",
        "algo.training_iter=4",
        "algo.lr=tag(log, interval(1e-4, 3e-3))",
        "algo.gamma=interval(0.95, 0.999)",
    ],
    "sac_pendulum": [
        "algo=sac",
        "env=pendulum",
        "algo.learning_starts=100",
        "algo.training_frequency=50",
        "algo.training_iter=2",
        "algo.batch_size=32",
        "algo.memory_size=2000",
        "algo.hid_layers=[32,32]",
        "algo.lr=tag(log, interval(1e-4, 3e-3))",
        "algo.tau=interval(0.001, 0.05)",
    ],
}


@pytest.mark.parametrize("preset", list(SEARCHES))
def test_batched_search_in_lockstep_with_asha_refill(preset, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(
        sweep,
        *SEARCHES[preset],
        ASHA,
        "env.max_frame=2000",
        "log_frequency=500",
        "max_session=2",
        "hydra.sweeper.n_trials=5",
        "hydra.sweeper.population=2",
        "hydra.sweeper.max_concurrent=1",
        "hydra.sweeper.sampler.seed=0",
    )
    assert proc.returncode == 0, output(proc)
    inboxes = list((sweep / "populations").glob("*/inbox.jsonl"))
    assert len(inboxes) == 1  # one process trained every trial, two at a time
    study = load_study(sweep)
    assert len(study.trials) == 5
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert any(t.state == TrialState.PRUNED for t in study.trials), "ASHA stopped no trial"
    first_done = min(t.datetime_complete for t in study.trials)
    assert sum(t.datetime_start > first_done for t in study.trials) >= 2  # slots refilled
    assert_asha_judged_the_mean_of_two_sessions(sweep)
    for n in trial_dirs(sweep):
        df = pd.read_csv(sweep / str(n) / "metrics.csv")
        losses = df.dropna(subset=["q_loss"])
        assert len(losses) and np.isfinite(losses.q_loss).all()
        # two seeds, two different runs
        assert df.groupby("session").q_loss.last().nunique() == 2


def held(state: dict, num_envs: int = 2) -> int:
    """Transitions in a member checkpoint's replay memory (rows written x env copies)."""
    return int(state["agent"]["memory"]["steps"]) * num_envs


def test_killed_dqn_population_resumes_every_member_with_its_replay_memory(
    rlhp_cli, rlhp_cli_background, tmp_path
):
    run_dir, log = tmp_path / "run", 500
    common = ["algo=dqn", "env=cartpole", "env.num_envs=2", f"log_frequency={log}", "max_session=3"]
    common += ["algo.learning_starts=200", "algo.training_frequency=100", "algo.memory_size=50000"]
    ckpts = [run_dir / "checkpoints" / f"session{s}.pt" for s in range(3)]
    proc = rlhp_cli_background(*common, "env.max_frame=500000", run_dir=run_dir)
    kill_once_checkpointed(proc, ckpts, 2 * log)
    saved = [torch.load(p, weights_only=False) for p in ckpts]
    for state in saved:  # every frame so far is in the member's replay memory
        assert held(state) == state["frame"]
    new_max = max(s["frame"] for s in saved) + 2 * log
    proc = rlhp_cli(*common, f"env.max_frame={new_max}", run_dir=run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pd.read_csv(run_dir / "metrics.csv")
    for s, before in enumerate(saved):
        frames = df[df.session == s].frame.to_numpy()
        assert (np.diff(frames) > 0).all() and frames[-1] >= new_max  # each frame once
        assert (frames <= before["frame"]).sum() == before["frame"] // log  # continued
        after = torch.load(ckpts[s], weights_only=False)
        # the restored transitions plus the new ones: not a fresh memory
        assert held(after) == after["frame"] > held(before)
        old, new = before["agent"]["memory"], after["agent"]["memory"]
        n = held(before) // 2  # rows (2 envs) the first run wrote
        for key in ("obs", "actions", "rewards"):
            torch.testing.assert_close(new[key][:n], old[key][:n], msg=key)


def test_replay_memories_that_cannot_fit_are_refused_in_one_line(rlhp_cli, tmp_path):
    run_dir = tmp_path / "run"
    proc = rlhp_cli(
        "algo=dqn",
        "env=cartpole",
        "max_session=3",
        "algo.memory_size=1000000000000",
        run_dir=run_dir,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rlhp: error: max_session=3 members of dqn need")
    assert "lower max_session or algo.memory_size" in lines[0]
    assert not (run_dir / "checkpoints").exists()
