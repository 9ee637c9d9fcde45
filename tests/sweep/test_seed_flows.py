"""What seed-project users reach for (issue 15): DGD, stop when the best holds, shared or per-trial
seeds, centred priors, warnings before launch, the study as optuna-dashboard shows it."""

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from rlhp.analysis import best_history
from rlhp.errors import ConfigError
from rlhp.sweep import _centred, _checks, _dgd, _space

from ._cli import TINY, cli_env, load_study, output, run_sweep, trial_config

TWO_DIMS = ["algo.lr=choice(1e-3,3e-4,1e-4)", "algo.gamma=choice(0.9,0.95,0.99)"]


# -- Distributed Grid Descent: the rule


def test_dgd_neighbourhood_is_one_step_in_exactly_one_dimension():
    assert sorted(_dgd.neighbours((1, 0), [3, 2])) == [(0, 0), (1, 1), (2, 0)]
    assert _dgd.neighbours((0,), [1]) == []


def test_dgd_weights_are_m_minus_runs():
    candidates, w = _dgd.weights((1, 1), [3, 3], {(1, 1): 2, (0, 1): 5, (2, 1): 1})
    assert candidates[0] == (1, 1) and len(candidates) == 5  # M = 4 neighbours + 1
    assert dict(zip(candidates, w, strict=True)) == {
        (1, 1): 3,
        (0, 1): 0,
        (2, 1): 4,
        (1, 0): 5,
        (1, 2): 5,
    }


def test_dgd_draws_around_the_best_mean_and_reruns_when_saturated():
    rng = np.random.RandomState(0)
    # (0, 0) has the best single run, (2, 2) the best mean over runs
    scores = {(0, 0): [9.0], (2, 2): [8.0, 8.5, 8.2], (1, 1): [1.0]}
    drawn = {_dgd.choose(scores, {}, [3, 3], True, rng) for _ in range(200)}
    assert drawn == {(0, 0), (1, 0), (0, 1)}
    assert {_dgd.choose(scores, {}, [3, 3], False, rng) for _ in range(200)} == {
        (1, 1),
        (0, 1),
        (2, 1),
        (1, 0),
        (1, 2),
    }
    # every candidate has M runs (running ones count): the least-run ones are drawn
    full = {(0,): [5.0] * 2, (1,): [1.0] * 2}
    assert {_dgd.choose(full, {(1,): 1}, [2], True, rng) for _ in range(50)} == {(0,)}


def test_dgd_search_walks_the_grid_and_resumes(tmp_path):
    sweep = tmp_path / "dgd"
    args = [
        *TINY,
        *TWO_DIMS,
        "hydra/sweeper/sampler=dgd",
        "hydra.sweeper.sampler.seed=0",
        "hydra.sweeper.max_concurrent=2",
    ]
    proc = run_sweep(sweep, *args, "hydra.sweeper.n_trials=5")
    assert proc.returncode == 0, output(proc)
    proc = run_sweep(sweep, *args, "hydra.sweeper.n_trials=9")  # resumed: 4 more
    assert proc.returncode == 0, output(proc)
    trials = [t for t in load_study(sweep).trials if t.state == TrialState.COMPLETE]
    assert len(trials) == 9
    grid = {"algo.lr": [1e-3, 3e-4, 1e-4], "algo.gamma": [0.9, 0.95, 0.99]}

    def point(t):
        return tuple(grid[k].index(t.params[k]) for k in grid)

    assert trials[0].user_attrs.get("prior")  # DGD starts at the config's own values
    # each run is one step at most from a configuration that had completed when it began (one
    # that began before any completed starts at a random grid point)
    for t in trials[1:]:
        before = [point(u) for u in trials if u.datetime_complete <= t.datetime_start]
        assert not before or any(
            sum(abs(a - b) for a, b in zip(point(t), p, strict=True)) <= 1 for p in before
        )
    assert len({point(t) for t in trials}) < len(trials)  # configurations are re-run


def test_dgd_offers_to_discretise_a_continuous_dimension(tmp_path):
    dgd = [*TINY, "hydra/sweeper/sampler=dgd", "hydra.sweeper.dry_run=true"]
    proc = run_sweep(tmp_path / "x", *dgd, "algo.lr=tag(log, interval(1e-5,1e-3))")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rlhp: error: grid and dgd search discrete dimensions, and algo.lr=tag(log, "
        "interval(1e-05, 0.001)) is continuous: search it as "
        "'algo.lr=ordered(1e-05, 3.16e-05, 0.0001, 0.000316, 0.001)' (or choice, range)"
    ]  # the prior (the config's lr, the top end) and 4 values below it, evenly in log space
    offered = proc.stderr.split("search it as '")[1].split("'")[0]
    proc = run_sweep(tmp_path / "x", *dgd, offered, "hydra.sweeper.n_trials=3")
    assert proc.returncode == 0, output(proc)
    lrs = [ln.split("algo.lr=")[1] for ln in proc.stdout.splitlines() if "algo.lr=" in ln]
    assert lrs[0] == "0.001" and len(lrs) == 3  # the prior first (a dry run completes none)
    assert set(lrs) <= {"1e-05", "3.16e-05", "0.0001", "0.000316", "0.001"}


# -- best-history stop, seeds, warnings, the study for optuna-dashboard


def test_stop_when_best_holds_with_shared_seeds_and_a_warning(tmp_path):
    sweep = tmp_path / "holds"
    # eval_epsilon does nothing without evaluation: every trial is the same run, on the same
    # seeds, so the first configuration stays the best and the search stops after 3 runs
    proc = run_sweep(
        sweep,
        *TINY,
        "env.eval_epsilon=choice(0.0,0.1,0.2)",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.n_trials=12",
        "hydra.sweeper.max_concurrent=1",
        "hydra.sweeper.stop_when_best_holds=3",
    )
    assert proc.returncode == 0, output(proc)
    text = proc.stdout + proc.stderr
    assert "searched env.eval_epsilon cannot change the run while eval_episodes=0" in text
    study = load_study(sweep)
    trials = study.trials
    steps = best_history(trials, maximize=True)
    assert 3 <= len(trials) < 12 and steps[-1].held == 3 and len(steps) == len(trials)
    assert {trial_config(sweep, t.number).seed for t in trials} == {0}  # shared seeds
    assert len({t.value for t in trials}) == 1  # common random numbers: the same run
    assert study.metric_names == ["total_reward_ma"]
    for t in trials:  # each log point as an intermediate value, for optuna-dashboard
        steps = sorted(t.intermediate_values)
        assert len(steps) == 2 and steps[-1] == t.user_attrs["frame"]
        assert t.intermediate_values[steps[-1]] == pytest.approx(t.value)


def test_seed_per_trial_and_too_few_trials_warning(tmp_path):
    sweep = tmp_path / "seeds"
    proc = run_sweep(
        sweep,
        *TINY,
        *TWO_DIMS,
        "max_session=2",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_concurrent=2",
        "hydra.sweeper.seed_per_trial=true",
    )
    assert proc.returncode == 0, output(proc)
    assert "n_trials=2 is below 3 per searched dimension (2 dimensions: 6)" in (
        proc.stdout + proc.stderr
    )
    seeds = {n: trial_config(sweep, n).seed for n in (0, 1)}
    assert seeds == {0: 0, 1: 2}  # seed + N * max_session: no session shares a seed


def test_warnings_rule():
    space = {"env.eval_epsilon": None, "algo.beta": None, "meta.search_scheduler.grace_period": 0}
    leaves = {"eval_episodes": 5, "algo.prioritized": False, "meta.search_scheduler": None}
    got = _checks.warnings(space, leaves, n_trials=9)
    assert got == [
        "searched algo.beta cannot change the run while algo.prioritized=False",
        "searched meta.search_scheduler.grace_period cannot change the run while "
        "meta.search_scheduler=None",
    ]
    assert "below 3 per searched dimension" in _checks.warnings(space, leaves, n_trials=8)[0]


# -- centred priors


def test_centre_puts_draws_around_the_prior_in_log_space():
    dist = FloatDistribution(1e-5, 1e-1, log=True)
    us = (np.arange(1000) + 0.5) / 1000
    values = np.array([_centred.centre(dist, 3e-4, 0.05, u) for u in us])
    assert values.min() >= 1e-5 and values.max() <= 1e-1
    logs = np.log(values)
    assert np.median(values) == pytest.approx(3e-4, rel=1e-3)
    assert np.std(logs) == pytest.approx(0.05 * math.log(1e4), rel=0.05)
    ints = {_centred.centre(IntDistribution(1, 10), 9, 0.5, u) for u in us}
    assert ints <= set(range(1, 11)) and 10 in ints and 1 in ints  # clipped, not dropped
    cat = CategoricalDistribution(["a", "b", "c"])
    drawn = [_centred.centre(cat, "b", 0.3, u) for u in us]
    assert drawn.count("b") > 700 and {"a", "c"} <= set(drawn)


@pytest.mark.parametrize("sampler", ["random", "qmc", "tpe"])
def test_prior_spread_centres_the_draws_of_the_sampler(tmp_path, sampler):
    proc = run_sweep(
        tmp_path / "p",
        *TINY,
        "algo.lr=tag(log,interval(1e-5,1e-1))",
        "algo.gamma=interval(0.9,0.999)",
        f"hydra/sweeper/sampler={sampler}",
        "hydra.sweeper.sampler.seed=0",
        "hydra.sweeper.n_trials=40",
        "hydra.sweeper.prior_spread=0.05",
        "hydra.sweeper.dry_run=true",
    )
    assert proc.returncode == 0, output(proc)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("trial ")]
    lr = np.array([float(ln.split("algo.lr=")[1].split()[0]) for ln in lines])
    prior, lr = lr[0], lr[1:]  # the prior runs first: the config's own lr
    assert len(lr) == 39
    # the prior centres the draws (std 0.05 * ln(1e4) = 0.46 in log space); uniform draws over
    # the log range would put about a fifth within a factor e of the prior
    near = np.mean(np.abs(np.log(lr / prior)) < 1.0)
    assert near > 0.7, sorted(lr)


def test_prior_spread_out_of_range_is_refused(tmp_path):
    proc = run_sweep(
        tmp_path / "p",
        *TINY,
        "algo.lr=tag(log,interval(1e-5,1e-1))",
        "hydra.sweeper.prior_spread=1.5",
        "hydra.sweeper.dry_run=true",
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "rlhp: error: hydra.sweeper.prior_spread must be null or in (0, 1], got 1.5"
    )
    # the config's lr (1e-3 for PPO on CartPole) lies below the range: nothing to centre on
    proc = run_sweep(
        tmp_path / "p",
        *TINY,
        "algo.lr=tag(log,interval(1e-2,1e-1))",
        "hydra.sweeper.prior_spread=0.1",
        "hydra.sweeper.dry_run=true",
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith(
        "rlhp: error: hydra.sweeper.prior_spread centres the search on the prior, but "
        "algo.lr=0.001 is outside its search space tag(log, interval(0.01, 0.1))"
    )


# -- ordered(...)


def test_ordered_is_the_index_of_its_values():
    params = {"algo.time_horizon": "ordered(4, 6, 8, 12)", "algo.lr": "choice(1e-3, 1e-4)"}
    space, fixed = _space.parse(params, ["algo.hid_layers=ordered([64],[64,64])"])
    assert space["algo.time_horizon"] == IntDistribution(0, 3) and not fixed
    assert space["algo.hid_layers"] == IntDistribution(0, 1)
    values = _space.ordered(params, ["algo.hid_layers=ordered([64],[64,64])"])
    assert values == {"algo.time_horizon": [4, 6, 8, 12], "algo.hid_layers": ["[64]", "[64,64]"]}
    assert _space.ordered(params, ["algo.time_horizon=8"]) == {}  # fixed on the command line
    view = _space.as_values(space, values)
    assert view["algo.time_horizon"] == CategoricalDistribution([4, 6, 8, 12])
    assert view["algo.lr"] == space["algo.lr"]
    with pytest.raises(ConfigError, match="two values or more"):
        _space.parse({"algo.lam": "ordered(0.9)"}, [])


ORDERED_PRESET = """\
# @package _global_
env:
  max_frame: 1000
log_frequency: 500
hydra:
  sweeper:
    n_trials: 4
    max_concurrent: 2
    params:
      algo.time_horizon: ordered(16, 32, 64, 128)
      algo.hid_layers: ordered([32], [64,64])
"""


def test_ordered_search_stores_indices_and_runs_values(tmp_path):
    conf = tmp_path / "conf"
    (conf / "search").mkdir(parents=True)
    (conf / "search" / "ordered.yaml").write_text(ORDERED_PRESET)
    sweep = tmp_path / "ordered"
    proc = run_sweep(
        sweep,
        "--config-dir",
        str(conf),
        "+search=ordered",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=0",
    )
    assert proc.returncode == 0, output(proc)
    study = load_study(sweep)
    values = {"algo.time_horizon": [16, 32, 64, 128], "algo.hid_layers": [[32], [64, 64]]}
    assert study.user_attrs["ordered"] == {
        "algo.time_horizon": [16, 32, 64, 128],
        "algo.hid_layers": ["[32]", "[64,64]"],
    }
    df = pd.read_csv(sweep / "experiment_df.csv").set_index("trial")
    for t in study.trials:
        assert t.distributions["algo.time_horizon"] == IntDistribution(0, 3)
        cfg = trial_config(sweep, t.number)
        for name, vals in values.items():
            got = OmegaConf.select(cfg, name)
            got = OmegaConf.to_object(got) if OmegaConf.is_config(got) else got
            assert got == vals[t.params[name]]  # the trial ran the value at the sampled index
        assert df.loc[t.number, "algo.time_horizon"] == cfg.algo.time_horizon
    assert t.params["algo.time_horizon"] in range(4)
    # stage 2 keeps the order: the span of the top trials' values
    out = tmp_path / "conf" / "search" / "stage2.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "rlhp.spec", "narrow", str(sweep), "--top_k", "3", "-o", str(out)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    narrowed = yaml.safe_load(out.read_text())["hydra"]["sweeper"]["params"]["algo.time_horizon"]
    top = df[df["state"] == "complete"].sort_values("rank").head(3)["algo.time_horizon"]
    span = [v for v in values["algo.time_horizon"] if top.min() <= v <= top.max()]
    want = span[0] if len(span) == 1 else f"ordered({', '.join(map(str, span))})"
    assert narrowed == want
