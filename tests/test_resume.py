"""Resuming: a killed run continues from its checkpoint; a finished run is not trained again."""

import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing import event_accumulator, plugin_event_multiplexer

LOG = 2048  # log_frequency: a multiple of cartpole's rollout (8 envs x 32 steps)


def checkpoint_frame(path: Path) -> int:
    return torch.load(path, weights_only=False)["frame"]


def csv_last_frame(path: Path) -> int:
    try:
        return int(pd.read_csv(path).frame.max())
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)


def tb_steps(logdir: Path, tag: str) -> list[int]:
    acc = event_accumulator.EventAccumulator(str(logdir), purge_orphaned_data=True)
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_killed_run_resumes_from_checkpoint(rlhp_cli, rlhp_cli_background, tmp_path):
    run_dir = tmp_path / "run"
    ckpt = run_dir / "checkpoints" / "session0.pt"
    metrics = run_dir / "metrics.csv"
    common = ["env=cartpole", f"log_frequency={LOG}"]
    proc = rlhp_cli_background(*common, "env.max_frame=200000", run_dir=run_dir)
    try:
        wait_for(lambda: ckpt.exists() and checkpoint_frame(ckpt) >= 2 * LOG, proc)
        # keep this checkpoint and let the run log two more points past it, then kill it and
        # put the older checkpoint back: as if the kill came between logging and checkpointing,
        # the worst case (metrics.csv and TensorBoard hold rows the checkpoint does not)
        saved = tmp_path / "saved.pt"
        shutil.copyfile(ckpt, saved)
        ckpt_frame = checkpoint_frame(saved)
        wait_for(lambda: csv_last_frame(metrics) >= ckpt_frame + 2 * LOG, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    shutil.copyfile(saved, ckpt)
    killed_frames = pd.read_csv(metrics).frame.tolist()
    assert max(killed_frames) >= ckpt_frame + 2 * LOG
    history = pd.DataFrame(torch.load(saved, weights_only=False)["history"])
    assert history.frame.max() == ckpt_frame

    # the same command again, with a budget a little past the checkpoint
    new_max = ckpt_frame + 3 * LOG
    proc = rlhp_cli(*common, f"env.max_frame={new_max}", run_dir=run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]

    df = pd.read_csv(metrics)
    frames = df.frame.to_numpy()
    assert (df.session == 0).all()
    assert len(np.unique(frames)) == len(frames)  # no frame counted twice
    assert (np.diff(frames) > 0).all()
    assert frames[-1] >= new_max
    before = df[df.frame <= ckpt_frame]
    after = df[df.frame > ckpt_frame]
    # the rows up to the checkpoint are the interrupted run's own, not a re-run from frame 0
    # (wall_s and fps would differ)
    cols = ["frame", "total_reward_ma", "wall_s", "fps"]
    pd.testing.assert_frame_equal(
        before[cols].reset_index(drop=True), history[cols].reset_index(drop=True)
    )
    # the frame counter went on from the checkpoint: one row per log point after it
    assert after.frame.tolist() == list(range(ckpt_frame + LOG, new_max + 1, LOG))
    assert (after.wall_s.to_numpy() > before.wall_s.max()).all()

    result = OmegaConf.load(run_dir / "result.yaml")
    assert result.frame == frames[-1]
    assert result.state == "complete"
    # the objective is the moving average carried across the interruption
    assert result.objective == pytest.approx(df.total_reward_ma.iloc[-1])

    steps = tb_steps(run_dir / "session0", "total_reward_ma")
    assert (np.diff(steps) > 0).all()
    # still one TensorBoard run for the session (`tensorboard --logdir RUN_DIR`)
    mux = plugin_event_multiplexer.EventMultiplexer().AddRunsFromDirectory(str(run_dir))
    assert set(mux.Runs()) == {"session0"}
    assert steps == df.frame[np.isfinite(df.total_reward_ma)].tolist()


def test_finished_run_rerun_returns_same_objective(rlhp_cli, tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["env=cartpole", "env.max_frame=1024", "log_frequency=256"]
    first = rlhp_cli(*overrides, run_dir=run_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    result = OmegaConf.to_container(OmegaConf.load(run_dir / "result.yaml"))
    metrics = (run_dir / "metrics.csv").read_text()
    steps = tb_steps(run_dir / "session0", "policy_loss")

    second = rlhp_cli(*overrides, run_dir=run_dir)
    assert second.returncode == 0, second.stderr[-3000:]
    again = OmegaConf.to_container(OmegaConf.load(run_dir / "result.yaml"))
    assert again["objective"] == result["objective"]
    assert again["frame"] == result["frame"]
    # nothing was trained: no new rows, no new TensorBoard points, no extra training time
    assert again["wall_s"] == result["wall_s"]
    assert (run_dir / "metrics.csv").read_text() == metrics
    assert tb_steps(run_dir / "session0", "policy_loss") == steps
