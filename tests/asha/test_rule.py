import math

import pytest

from rlhp.asha._rule import bracket_of, cutoff, decide, milestones, reached

NAN = float("nan")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((1, 3, 27), [1, 3, 9]),  # 27 == max_t is not a rung
        ((1, 3, 28), [1, 3, 9, 27]),
        ((10, 3, 100), [10, 30, 90]),
        ((1, 3, 27, 1), [3, 9]),  # bracket 1 starts one rung up
        ((2, 2, 17, 2), [8, 16]),
        ((5, 4, 5), []),
    ],
)
def test_milestones(args, expected):
    assert milestones(*args) == expected


def test_empty_rung_has_no_cutoff_and_continues():
    assert cutoff([], 3) is None
    assert decide(-1e9, None) is True


def test_cutoff_of_one_value_is_that_value():
    # rf=3: the second trial at a rung is compared with the first one alone.
    assert cutoff([5.0], 3) == 5.0
    assert cutoff([5.0], 3, "min") == 5.0


@pytest.mark.parametrize(
    ("values", "rf", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 2, 2.5),  # median: halfway between 2 and 3
        ([40.0, 0.0, 20.0, 10.0, 30.0], 4, 30.0),  # 75th: position 0.75 * 4 = 3
        ([0.0, 3.0, 6.0], 3, 4.0),  # 66.7th: position 4/3, 3 + (6 - 3) / 3
        ([1.0, NAN, 3.0], 2, 2.0),  # NaN ignored: median of 1 and 3
    ],
)
def test_cutoff_percentile(values, rf, expected):
    assert cutoff(values, rf) == pytest.approx(expected)


def test_cutoff_min_mode_is_lower_percentile():
    # Negated values -40..0: their 75th percentile is -10, so the cutoff is 10.
    assert cutoff([0.0, 10.0, 20.0, 30.0, 40.0], 4, "min") == pytest.approx(10.0)


def test_cutoff_of_only_nans_is_none():
    assert cutoff([NAN, NAN], 2) is None


def test_decide_ties_continue_and_strictly_worse_stops():
    assert decide(2.5, 2.5) is True
    assert decide(2.4999, 2.5) is False
    assert decide(10.0, 10.0, "min") is True
    assert decide(10.0001, 10.0, "min") is False
    assert decide(9.0, 10.0, "min") is True


def test_nan_value_is_worst():
    assert decide(NAN, -math.inf) is False
    assert decide(NAN, math.inf, "min") is False
    assert decide(NAN, None) is True


@pytest.mark.parametrize(
    ("frame", "last", "expected"),
    [
        (0, None, None),  # below the first rung
        (1, None, 1),
        (5, None, 3),
        (10, None, 9),  # jumps past 1 and 3: only 9 counts
        (10, 9, None),  # already decided
        (9, 3, 9),
        (4, 9, None),  # 3 was skipped: never back-filled
    ],
)
def test_reached(frame, last, expected):
    assert reached(frame, [1, 3, 9], last) == expected


def test_bracket_of_is_stable_and_softmax_weighted():
    assert all(bracket_of(str(i), [4]) == 0 for i in range(100))
    trials = [f"trial-{i}" for i in range(4000)]
    brackets = [bracket_of(t, [3, 2]) for t in trials]
    assert brackets == [bracket_of(t, [3, 2]) for t in trials]
    # Weights e^0 and e^-1: bracket 0 gets 1 / (1 + e^-1) = 0.731 of the trials.
    assert brackets.count(0) / len(trials) == pytest.approx(0.731, abs=0.03)
    assert set(brackets) == {0, 1}
