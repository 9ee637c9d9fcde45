"""The shared frame schedules: linear annealing and the gradient steps an off-policy agent owes,
against the formulas worked by hand."""

import numpy as np
import pytest

from rlhp.algo._schedule import crossed, linear, updates_due


@pytest.mark.parametrize(
    "start, end, step, end_step",
    [(1.0, 0.1, 0, 1000), (1.0, 0.1, 250, 1000), (0.4, 1.0, 999, 1000), (3e-4, 0.0, 7, 8)],
)
def test_linear_moves_from_start_to_end_in_proportion(start, end, step, end_step):
    expected = start + step / end_step * (end - start)
    assert linear(start, end, step, end_step) == pytest.approx(expected)
    assert isinstance(linear(start, end, step, end_step), float)


def test_linear_stays_at_end_after_end_step():
    for step in (1000, 1001, 10**9):
        assert linear(1.0, 0.1, step, 1000) == pytest.approx(0.1)


def test_linear_anneals_each_member_of_an_array():
    frames = np.array([0, 500, 1000, 4000])
    got = linear(1.0, 0.0, frames, 2000)
    np.testing.assert_allclose(got, [1.0, 1.0 - 500 / 2000, 1.0 - 1000 / 2000, 0.0])


def test_linear_factor_is_exactly_what_the_algorithms_used_before():
    """lr * linear(1, 0, ...) keeps the old products bit for bit (population tests compare
    runs to 1e-8): 1 - min(x, 1) and max(1 - x, 0)."""
    frames = np.arange(0, 3000, 7)
    x = frames / 2000
    np.testing.assert_array_equal(linear(1.0, 0.0, frames, 2000), np.maximum(1.0 - x, 0.0))
    for frame in (0, 13, 1999, 2000, 2500):
        assert linear(1.0, 0.0, frame, 2000) == 1.0 - min(frame / 2000, 1.0)


@pytest.mark.parametrize("last, frame, every", [(0, 4, 8), (4, 8, 8), (7, 25, 8), (16, 16, 8)])
def test_crossed_counts_the_multiples_passed(last, frame, every):
    expected = sum(1 for f in range(last + 1, frame + 1) if f % every == 0)
    assert crossed(last, frame, every) == expected


def test_updates_due_is_training_iter_per_training_frequency_from_learning_starts():
    kw = {"learning_starts": 16, "training_frequency": 8, "training_iter": 3}
    due = [updates_due(f - 4, f, **kw) for f in range(4, 41, 4)]  # 4 frames per vector step
    expected = [3 * (f % 8 == 0) if f >= 16 else 0 for f in range(4, 41, 4)]
    assert due == expected
    assert updates_due(0, 32, **kw) == 3 * (32 // 8)  # a jump crosses four multiples
    assert updates_due(0, 15, **kw) == 0
