"""A search's files follow the umask, so that teammates (and a TensorBoard server under another
account) can read them: the atomic write does not make them owner-only."""

import os
import subprocess
import sys
from pathlib import Path

from sweep._cli import TINY, cli_env, output, sweep_cmd

ANALYSIS = ["experiment_df.csv", "best.yaml", "importance.yaml", "best_so_far.png"]


def run_with_umask(umask: int, cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: os.umask(umask),
    )


def modes(root: Path) -> dict[str, int]:
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.stat().st_mode & 0o777 for p in files}


def test_a_search_and_its_analysis_honour_the_umask(tmp_path):
    sweep = tmp_path / "sweep"
    asha = "meta.search_scheduler={grace_period: 500, reduction_factor: 2}"
    search = sweep_cmd(
        sweep,
        "algo.lr=tag(log, interval(1e-4, 1e-3))",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_concurrent=2",
        "hydra.sweeper.graphs=true",
        asha,
        *TINY,
    )
    proc = run_with_umask(0o022, search, tmp_path)
    assert proc.returncode == 0, output(proc)
    found = modes(sweep)
    for name in ["state.yaml", "0/result.yaml", "0/metrics.csv", "0/checkpoints/session0.pt"]:
        assert name in found, sorted(found)
    assert any(name.endswith(".rlhp_analyze") for name in found), sorted(found)
    assert {name: m for name, m in found.items() if m != 0o644} == {}

    # the analysis run again by a member of a group that shares its files
    again = run_with_umask(0o002, [sys.executable, "-m", "rlhp.analyze", str(sweep)], tmp_path)
    assert again.returncode == 0, output(again)
    found = modes(sweep)
    for name in ANALYSIS:
        assert found[name] == 0o664, (name, oct(found[name]))
