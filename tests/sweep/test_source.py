"""TrialSource.ask on real Optuna studies: rejected samples are infeasible to the sampler, and a
sampler stuck on rejected samples gets a random feasible one instead of ending the search."""

from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import FloatDistribution
from optuna.samplers import PartialFixedSampler, RandomSampler
from optuna.trial import TrialState

from rlhp import record
from rlhp.sweep._source import PATIENCE, Search, TrialSource

SPACE = {"x": FloatDistribution(0.0, 1.0), "y": FloatDistribution(0.0, 1.0)}


pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def source(study: optuna.Study, constraints: list[str]) -> TrialSource:
    """The trials of `study` in a search of two floats under `constraints`."""
    cfg = OmegaConf.create({"n_trials": 100, "max_failure_rate": 0.0, "budget_hours": None})
    search = Search(cfg, SPACE, [], {}, constraints, {}, Path("unused"))
    return TrialSource(search, study, parallel=1, queues=False)


def test_a_sampler_stuck_on_a_rejected_sample_gets_a_random_feasible_one():
    stuck = PartialFixedSampler({"x": 0.9, "y": 0.9}, RandomSampler(seed=0))  # always (0.9, 0.9)
    study = optuna.create_study(sampler=stuck)
    sw = source(study, ["x > 0.5 and y > 0.5"])
    for _ in range(3):
        trial = sw.ask()
        assert not (trial.params["x"] > 0.5 and trial.params["y"] > 0.5)
        assert trial.user_attrs["sampler"] == "random (fallback)"
        optuna_trial = study.get_trials(deepcopy=False)[trial.number]
        assert optuna_trial.state == TrialState.RUNNING
        study.tell(trial, 1.0)
    assert study.sampler is stuck  # the search's own sampler again after each draw
    rejected = [t for t in study.trials if record.state(t) == record.REJECTED]
    assert len(rejected) >= 3 * PATIENCE
    assert all(t.params == {"x": 0.9, "y": 0.9} for t in rejected[:PATIENCE])
    for t in rejected:  # infeasible to samplers that use constraints (TPE), never a FAIL
        assert t.state == TrialState.PRUNED and t.constraints == {"rlhp": 1.0}
        assert t.user_attrs["rejected"] == "x > 0.5 and y > 0.5"


def test_fixed_parameters_hold_in_the_fallback_too():
    study = optuna.create_study(sampler=PartialFixedSampler({"x": 0.9}, RandomSampler(seed=1)))
    trial = source(study, ["x > 0.5 and y > 0.2"]).ask(fixed={"y": 0.1})
    assert trial.params["y"] == 0.1
    assert study.sampler.__class__ is PartialFixedSampler  # restored


def test_tpe_learns_where_the_constraint_rejects():
    """TPE sees rejected samples as infeasible: with the best just beside the rejected region,
    fewer than half its samples are rejected (told as FAIL, it ignored them: 85% rejected)."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))
    sw = source(study, ["x > 0.7"])
    for _ in range(40):
        trial = sw.ask()
        study.tell(trial, trial.params["x"])
    rejected = [t for t in study.trials if record.state(t) == record.REJECTED]
    assert len(rejected) < 40, len(rejected)
    assert not sw.fell_back  # learnt, not rescued by random draws


def test_a_trial_whose_sampling_was_cut_short_is_rejected_and_not_counted_as_launched():
    """A controller killed while asking leaves a RUNNING trial with some parameters: resume
    rejects it (never launched), so the search still launches n_trials."""
    study = optuna.create_study()
    done = study.ask(SPACE)
    study.tell(done, 1.0)
    study.ask({"x": SPACE["x"]})  # cut short: y never sampled
    sw = source(study, [])
    assert sw.resume() == []
    assert sw.launched == 1 and sw.failed == 0
    assert record.state(study.trials[1]) == record.REJECTED
