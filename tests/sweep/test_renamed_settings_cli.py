"""Renamed hydra.sweeper settings through the real CLI (dry runs: nothing trains): the new name
works, the old one works for one release with one deprecation line on stderr."""

import re

import pytest

from ._cli import output, run_sweep, trial_dirs

DEPRECATED = "rlhp: warning: hydra.sweeper.{} is deprecated; use hydra.sweeper.{}"
DRY = ["+search=ppo_cartpole", "hydra.sweeper.dry_run=true", "hydra.sweeper.n_trials=1"]


def deprecations(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "deprecated" in ln]


@pytest.mark.parametrize("name", ["prior_values", "priors"])
def test_prior_values_set_the_first_trial(tmp_path, name):
    sweep_dir = tmp_path / name
    proc = run_sweep(sweep_dir, *DRY, f"+hydra.sweeper.{name}={{algo.lr: 0.0005, algo.lam: 0.85}}")
    assert proc.returncode == 0, output(proc)
    first = re.search(r"^trial 0: (.*)$", proc.stdout, re.MULTILINE)
    assert first is not None, output(proc)
    assert {"algo.lr=0.0005", "algo.lam=0.85"} <= set(first[1].split()), output(proc)
    want = [DEPRECATED.format("priors", "prior_values")] if name == "priors" else []
    assert deprecations(proc.stderr) == want, output(proc)
    assert trial_dirs(sweep_dir) == []


@pytest.mark.parametrize("name", ["max_session", "sessions"])
def test_validate_max_session_is_checked_under_either_name(tmp_path, name):
    sweep_dir = tmp_path / name
    proc = run_sweep(sweep_dir, *DRY, f"hydra.sweeper.validate.{name}=0")
    assert proc.returncode == 2, output(proc)
    want = [DEPRECATED.format("validate.sessions", "validate.max_session")]
    assert deprecations(proc.stderr) == (want if name == "sessions" else []), output(proc)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("rlhp: error: ")]
    assert errors == ["rlhp: error: hydra.sweeper.validate.max_session must be >= 1, got 0"]


def test_the_optuna_sweepers_n_jobs_is_taken_as_max_concurrent_with_a_hint(tmp_path):
    proc = run_sweep(tmp_path / "n_jobs", *DRY, "hydra.sweeper.n_jobs=0")
    assert proc.returncode == 2, output(proc)
    hint = "rlhp: warning: hydra.sweeper.n_jobs is the Optuna sweeper's name; "
    assert [ln for ln in proc.stderr.splitlines() if "n_jobs" in ln] == [
        hint + "use hydra.sweeper.max_concurrent"
    ], output(proc)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("rlhp: error: ")]
    assert errors == [
        "rlhp: error: hydra.sweeper.max_concurrent must be null (CPU cores) or >= 1, got 0"
    ]
