"""ASHA under populations, simulated (tests/asha/_simulate.py) with the coordinator's rule: the
members of a population that reach a rung together, judged in arrival order, get no fewer passes
than the same trials would arriving asynchronously."""

import pytest

from asha._simulate import compare

SEEDS = range(20)


@pytest.mark.parametrize("trend", [0.0, 2.0])
def test_a_batch_gets_no_fewer_passes_than_the_same_trials_staggered(trend):
    table = compare(SEEDS, trend=trend)
    passes, complete = table["batched"]
    staggered, staggered_complete = table["replay staggered"]
    # in expectation: the mean over 20 searches may differ by a fraction of a pass
    assert passes.sum() >= 0.98 * staggered.sum(), (passes, staggered)
    assert complete >= staggered_complete - 0.5, (complete, staggered_complete)


def test_fewer_completes_come_from_when_trials_are_asked():
    """With a sampler that improves with results, a population's trials (asked at once, before
    most results) complete less often than one process per trial's: the gap is the sampler's,
    since the same trials replayed staggered complete no more often than batched."""
    table = compare(SEEDS, trend=2.0)
    assert table["batched"][1] < table["staggered"][1]
    assert table["replay staggered"][1] == pytest.approx(table["batched"][1], abs=1.0)
