"""A DGD search over ordered(...) dimensions, end to end (issue 23): its re-runs train on fresh
seeds, and rlhp.analyze reads it (values, not indices, everywhere)."""

import re

import pandas as pd
import yaml
from omegaconf import OmegaConf
from optuna.trial import TrialState
from sweep._cli import TINY, load_study, output, run_cli, run_sweep, trial_config

PRESET = """\
# @package _global_
hydra:
  sweeper:
    params:
      algo.lr: ordered(3e-4, 1e-3)
      algo.hid_layers: ordered([32], [64, 64])
"""
VALUES = {
    "algo.lr": [3e-4, 1e-3],
    "algo.hid_layers": [[32], [64, 64]],
}


def test_dgd_over_ordered_dimensions_reruns_on_fresh_seeds_and_analyses(tmp_path):
    conf = tmp_path / "conf" / "search"
    conf.mkdir(parents=True)
    (conf / "ordered.yaml").write_text(PRESET)
    sweep = tmp_path / "dgd"
    proc = run_sweep(
        sweep,
        "--config-dir",
        str(conf.parent),
        "+search=ordered",
        *TINY,
        "hydra/sweeper/sampler=dgd",
        "hydra.sweeper.sampler.seed=0",
        "hydra.sweeper.n_trials=6",  # 4 grid points: some run again
        "hydra.sweeper.graphs=true",
        "hydra.sweeper.max_concurrent=2",
    )
    assert proc.returncode == 0, output(proc)
    assert "rlhp.analyze: error" not in proc.stderr and "Traceback" not in proc.stderr
    study = load_study(sweep)
    trials = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 6
    runs: dict[tuple, list[int]] = {}
    for t in trials:
        cfg = trial_config(sweep, t.number)
        for name, values in VALUES.items():  # the trial ran the value at its index
            got = OmegaConf.select(cfg, name)
            got = OmegaConf.to_object(got) if OmegaConf.is_config(got) else got
            assert got == values[t.params[name]]
        runs.setdefault(tuple(sorted(t.params.items())), []).append(cfg.seed)
    reruns = [seeds for seeds in runs.values() if len(seeds) > 1]
    assert reruns and all(len(set(seeds)) == len(seeds) for seeds in reruns)  # fresh seeds
    assert len({seed for seeds in runs.values() for seed in seeds}) == 6

    best = OmegaConf.to_object(OmegaConf.load(sweep / "optimization_results.yaml"))
    assert best["best_params"] == {
        name: VALUES[name][study.best_trial.params[name]] for name in VALUES
    }
    (sweep / "best_history.png").unlink()
    proc = run_cli("analyze", sweep, "--history")
    assert proc.returncode == 0, output(proc)  # the HParams summary too (exit 1 if it failed)
    assert (sweep / "best_history.png").stat().st_size > 0
    history = proc.stdout.split("tensorboard --logdir")[1].splitlines()[1:]
    assert history[0].split()[-2:] == ["algo.lr", "algo.hid_layers"] and len(history) == 7
    for line in history[1:]:  # values, not indices
        assert re.search(r" (0\.0003|0\.0010) +\[(32|64, 64)\]$", line), line
    df = pd.read_csv(sweep / "experiment_df.csv")
    assert {str(yaml.safe_load(v)) for v in df["algo.hid_layers"]} <= {"[32]", "[64, 64]"}


def test_the_dgd_preset_starts_at_the_tuned_values(tmp_path):
    proc = run_sweep(tmp_path / "dry", "+search=ppo_cartpole_dgd", "hydra.sweeper.dry_run=true")
    assert proc.returncode == 0, output(proc)
    first = next(ln for ln in proc.stdout.splitlines() if ln.startswith("trial 0: "))
    assert first.split(": ")[1].split() == [  # tuned/ppo_cartpole.yaml, DGD's first point
        "algo.lr=0.001",
        "algo.lam=0.8",
        "algo.gamma=0.98",
        "algo.time_horizon=32",
        "algo.training_epoch=20",
    ]
