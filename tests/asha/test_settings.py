import pytest

from rlhp.asha import check_settings, scheduler_settings

GOOD = {"grace_period": 1000, "reduction_factor": 3, "max_t": 27000}  # rungs 1000, 3000, 9000


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"grace_period": 0}, ["grace_period", "0"]),
        ({"grace_period": 1.5}, ["grace_period", "1.5"]),
        ({"reduction_factor": 1}, ["reduction_factor", "1"]),
        ({"reduction_factor": True}, ["reduction_factor", "True"]),
        ({"max_t": 1000}, ["max_t", "1000"]),
        ({"mode": "maximize"}, ["mode", "maximize"]),
        ({"brackets": 0}, ["brackets", "[1, 3]"]),
        ({"brackets": 4}, ["brackets", "[1, 3]", "[1000, 3000, 9000]"]),
        ({"lock": "fcntl"}, ["lock", "flock, symlink", "fcntl"]),
    ],
)
def test_bad_settings_are_named(change, words):
    with pytest.raises(ValueError) as e:
        check_settings(**(GOOD | change))
    assert "\n" not in str(e.value)
    for word in words:
        assert word in str(e.value)


def test_good_settings_pass():
    check_settings(**GOOD, mode="min", brackets=3, lock="symlink")


def test_scheduler_settings_default_max_t_to_max_frame():
    got = scheduler_settings({"grace_period": 1000, "reduction_factor": 3}, max_frame=27000)
    assert got == GOOD | {"mode": "max", "brackets": 1, "lock": "flock"}
    # a null max_t (the README's "max_t: env.max_frame") also means max_frame
    assert scheduler_settings(GOOD | {"max_t": None}, max_frame=5000)["max_t"] == 5000


def test_brackets_that_need_rungs_beyond_max_frame_are_refused():
    # the preset's grace period 10000 below max_frame 30000 leaves one rung, 10000
    with pytest.raises(ValueError, match=r"brackets .*\[1, 1\].*\[10000\].*got 5"):
        scheduler_settings({"grace_period": 10000, "reduction_factor": 3, "brackets": 5}, 30000)


@pytest.mark.parametrize(
    ("scheduler", "match"),
    [
        ({"grace_period": 10, "reduction_factor": 3, "bracket": 2}, "unknown setting.*bracket"),
        ({"reduction_factor": 3}, "grace_period is missing"),
    ],
)
def test_unknown_or_missing_keys(scheduler, match):
    with pytest.raises(ValueError, match=match):
        scheduler_settings(scheduler, 1000)
