"""What rlhp takes from the private parts of Hydra and the Optuna sweeper (wrapped in
rlhp.sweep._foreign): an upgrade that changes one fails here, not in a user's sweep. submitit's
are guarded in test_local.py; a trial's JobReturn is read through its public API."""

import inspect

import pytest
from hydra._internal.grammar import grammar_functions
from hydra.core.override_parser import overrides_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from rlhp.errors import Preempted
from rlhp.sweep import _foreign, _slurm


def parse(line: str):
    return OverridesParser.create().parse_override(line)


def test_hydra_builds_its_function_table_from_create_functions():
    assert inspect.signature(_foreign._hydra_functions).parameters == {}
    functions = _foreign._hydra_functions()
    assert functions.functions["choice"] is grammar_functions.choice
    assert list(inspect.signature(functions.register).parameters) == ["name", "func"]


def test_the_command_line_grammar_reads_ordered_as_a_choice():
    _foreign.add_ordered()
    _foreign.add_ordered()  # again: no second registration
    assert overrides_parser.create_functions is _foreign._functions
    override = parse("algo.time_horizon=ordered(16, 8, [64, 64])")
    assert override.is_choice_sweep()
    assert list(override.sweep_iterator()) == [16, 8, [64, 64]]


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("interval(0.1, 0.3)", FloatDistribution(0.1, 0.3)),
        ("tag(log, interval(1e-5, 1e-3))", FloatDistribution(1e-5, 1e-3, log=True)),
        ("int(interval(4, 20))", IntDistribution(4, 20)),
        ("range(1, 9, 2)", IntDistribution(1, 7, step=2)),
        ("choice(a, 2)", CategoricalDistribution(["a", 2])),
        ("0.5", "0.5"),
    ],
)
def test_the_optuna_sweepers_reading_of_its_grammar(value, want):
    assert _foreign.distribution(parse(f"algo.x={value}")) == want


def job_return(status: JobStatus, value: object) -> JobReturn:
    ret = JobReturn(status=status)
    ret.return_value = value
    return ret


def test_a_trial_that_checkpointed_on_a_signal_is_preempted():
    preempted = Preempted("session 0 checkpointed at frame 500")
    assert _slurm._preempted(job_return(JobStatus.FAILED, preempted))
    assert not _slurm._preempted(job_return(JobStatus.FAILED, RuntimeError("diverged")))
    assert not _slurm._preempted(job_return(JobStatus.COMPLETED, 1.0))
