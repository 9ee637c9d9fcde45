"""ASHA under populations, simulated (tests/asha/_simulate.py): the members of a population that
reach a rung together get no fewer passes than the same trials staggered."""

import pytest

from asha._simulate import compare

SEEDS = range(20)


@pytest.fixture(scope="module")
def improving():
    # the sampler improves with results: a job's trials, asked at once, are of one vintage
    return compare(SEEDS, trend=2.0)


def test_a_batch_gets_no_fewer_passes_than_the_same_trials_staggered(improving):
    passes, complete = improving["batched, together"]
    staggered, staggered_complete = improving["replay staggered"]
    assert passes.sum() >= staggered.sum()
    assert complete >= staggered_complete


def test_members_of_a_batch_do_not_cut_each_other(improving):
    _, together = improving["batched, together"]
    _, one_after_the_other = improving["batched, one after the other"]
    assert together > one_after_the_other


def test_a_batch_at_an_empty_rung_keeps_pruning():
    # values that do not improve: the first jobs meet empty rungs; had their members passed
    # free there, the first job's 16 trials would all complete
    table = compare(SEEDS, trend=0.0)
    assert table["batched, together"][1] < 1.5 * table["staggered"][1]
