"""The progress line and state.yaml follow a running trial's frames (not only trial starts and
ends), and tell queued jobs from running ones where the launcher queues them."""

import os
import time

import optuna
from optuna.trial import TrialState, create_trial

from rlhp.sweep import _state

from ._cli import kill_group, start_sweep, state, wait_for


def test_state_yaml_follows_the_frames_of_a_running_trial(tmp_path):
    sweep = tmp_path / "sweep"
    log = tmp_path / "search.log"
    long_trial = ["env.max_frame=10000000", "log_frequency=500", "hydra.sweeper.n_trials=1"]
    proc = start_sweep(sweep, "algo.lr=1e-3,3e-4", *long_trial, log=log)
    seen: set[int] = set()

    def frames_moved() -> bool:
        try:
            st = state(sweep)
        except (OSError, ValueError):
            return False
        assert st.complete == 0, "the trial ended: no frames were seen while it ran"
        if st.running == 1 and st.get("frames"):
            seen.add(st.frames)
        return len(seen) >= 2

    try:
        wait_for(frames_moved, proc, 240, "state.yaml's frames to move while a trial runs", log)
    finally:
        kill_group(proc)
    assert min(seen) > 0
    # a log (not a terminal) gets a line when a trial starts or ends, not at every redraw
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("rlhp: 0 complete")]
    assert len(lines) <= 2, lines


def test_summary_counts_queued_jobs_apart_and_the_frames_trained(tmp_path):
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    ended = create_trial(state=TrialState.COMPLETE, value=1.0, params={"x": 0.5},
                         distributions=dist, user_attrs={"frame": 3000})  # fmt: skip
    study.add_trial(ended)
    for _ in range(3):
        study.ask(dist)
    since = time.time()
    started, old = tmp_path / "1" / ".hydra", tmp_path / "3" / ".hydra"
    for hydra in (started, old):
        hydra.mkdir(parents=True)
        (hydra / "config.yaml").write_text("seed: 0\n")
    an_hour_ago = since - 3600
    os.utime(old / "config.yaml", (an_hour_ago, an_hour_ago))  # its run before a resume
    (tmp_path / "1" / "metrics.csv").write_text(
        "session,frame,total_reward_ma\n0,500,9.0\n0,1000,10.0\n1,500,9.5\n1,1000,11.0\n"
    )
    (tmp_path / "3" / "metrics.csv").write_text("session,frame,total_reward_ma\n0,700,9.0\n")

    st = _state.summary(study, 8, 10.0, 2, tmp_path, queued_since=since)
    assert (st["running"], st["queued"], st["running_trials"], st["queued_trials"]) == (
        1, 2, [1], [2, 3],
    )  # fmt: skip
    assert st["frames"] == 3000 + 2000 + 700
    line, steady = _state.progress_line(st)
    assert "1 running, 2 queued of 8" in steady and "5.7k frames" in line
    assert "frames" not in steady
    local = _state.summary(study, 8, 10.0, 2, tmp_path)  # a local launcher: all launched run
    assert (local["running"], "queued" in local) == (3, False)
