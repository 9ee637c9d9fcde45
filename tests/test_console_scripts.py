"""The console scripts `rlhp` and `rlhp-train` as a user runs them (pip install puts them beside
the interpreter): subcommands, rlhp's --help, Hydra's tab completion."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from sweep._cli import TINY, cli_env, output

BIN = Path(sys.executable).parent


def script(name: str, *args: str, cwd: Path, env: dict | None = None, timeout: float = 120):
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"no {path}: install rlhp (pip install -e .) to get its console scripts")
    return subprocess.run(
        [str(path), *args],
        cwd=cwd,
        env={**cli_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_rlhp_train_searches_and_rlhp_analyze_reads_the_search(tmp_path):
    sweep = tmp_path / "sweep"
    searched = "algo.lr=tag(log, interval(1e-4, 1e-3))"
    proc = script(
        "rlhp", "train", "-m", f"hydra.sweep.dir={sweep}", searched,
        "hydra.sweeper.n_trials=1", *TINY, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, output(proc)
    (sweep / "experiment_df.csv").unlink()
    proc = script("rlhp", "analyze", str(sweep), cwd=tmp_path)
    assert proc.returncode == 0, output(proc)
    assert list(pd.read_csv(sweep / "experiment_df.csv")["state"]) == ["complete"]


def test_help_names_rlhp_and_says_search_and_cluster_take_a_plus(tmp_path):
    module = [sys.executable, "-m", "rlhp.train", "--help"]
    as_module = subprocess.run(module, cwd=tmp_path, env=cli_env(), capture_output=True, text=True)
    for proc in (script("rlhp-train", "--help", cwd=tmp_path), as_module):
        assert proc.returncode == 0, output(proc)
        assert proc.stdout.startswith("rlhp: "), proc.stdout[:300]
        assert "take a +: +search=NAME, +cluster=slurm" in proc.stdout
        assert "search: a2c_cartpole" in proc.stdout  # Hydra's list of presets is kept
        assert 'eval "$(rlhp-train -sc install=bash)"' in proc.stdout
    proc = script("rlhp", cwd=tmp_path)
    assert proc.returncode == 2 and "usage: rlhp COMMAND" in proc.stdout
    commands = ("train", "analyze", "validate", "spec", "stage")
    assert all(f"  {c} " in proc.stdout for c in commands)
    proc = script("rlhp", "stage", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--reward-generations" in proc.stdout, output(proc)


def test_rlhp_train_has_hydras_tab_completion(tmp_path):
    proc = script("rlhp-train", "-sc", "install=bash", cwd=tmp_path)
    assert proc.returncode == 0, output(proc)
    assert "complete -o nospace -o default -F hydra_bash_completion rlhp-train" in proc.stdout
    line = "rlhp-train env=halfch"
    query = {"COMP_LINE": line, "COMP_POINT": str(len(line))}
    proc = script("rlhp-train", "-sc", "query=bash", cwd=tmp_path, env=query)
    assert proc.stdout.split() == ["env=halfcheetah"], output(proc)


def test_an_unknown_command_is_one_error_line(tmp_path):
    proc = script("rlhp", "search", cwd=tmp_path)
    assert proc.returncode == 2, output(proc)
    assert proc.stderr.splitlines() == [
        "rlhp: error: unknown command 'search'; one of train, analyze, validate, spec, stage"
    ]
    assert os.listdir(tmp_path) == []
