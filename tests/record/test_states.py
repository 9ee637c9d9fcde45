"""The one state vocabulary, on real Optuna trials."""

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from rlhp import record

DIST = {"x": FloatDistribution(0, 1)}


def trial(state: TrialState, **kw) -> optuna.trial.FrozenTrial:
    return create_trial(state=state, params={"x": 0.5}, distributions=DIST, **kw)


def test_each_optuna_state_has_one_name():
    assert record.state(trial(TrialState.COMPLETE, value=1.0)) == record.COMPLETE
    assert record.state(trial(TrialState.FAIL)) == record.FAILED
    assert record.state(trial(TrialState.RUNNING)) == record.RUNNING
    assert record.state(trial(TrialState.WAITING)) == record.WAITING
    rejected = trial(TrialState.FAIL, user_attrs={"rejected": "algo.lr > 0.1"})
    assert record.state(rejected) == record.REJECTED
    assert set(record.STATES) == {"complete", "stopped", "failed", "rejected", "running", "waiting"}


def test_a_stopped_trial_is_labelled_with_its_frame_and_scored_at_its_rung():
    values = {1000: 10.0, 3000: 30.0, 9000: 90.0}
    stopped = trial(TrialState.PRUNED, intermediate_values=values, user_attrs={"stopped_at": 3000})
    assert record.state(stopped) == record.STOPPED
    assert record.label(stopped) == "stopped@3000"
    assert record.score(stopped) == values[3000]
    # a study from before `stopped_at` was kept: its last report
    older = trial(TrialState.PRUNED, intermediate_values=values)
    assert record.stopped_at(older) == max(values) and record.score(older) == values[9000]


def test_only_complete_and_stopped_trials_have_a_score():
    assert record.score(trial(TrialState.COMPLETE, value=2.5)) == 2.5
    assert record.label(trial(TrialState.COMPLETE, value=2.5)) == "complete"
    assert record.score(trial(TrialState.FAIL)) is None
    assert record.score(trial(TrialState.PRUNED)) is None  # stopped before any report
