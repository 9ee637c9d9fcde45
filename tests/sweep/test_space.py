"""The search space: the Optuna sweeper grammar, command-line dimensions, priors and grids."""

import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from rlhp.errors import ConfigError
from rlhp.sweep import _space

CONF = Path(__file__).resolve().parents[2] / "conf"


def one(expr: str, name: str = "algo.x"):
    space, fixed = _space.parse({name: expr}, [])
    assert fixed == []
    assert list(space) == [name]
    return space[name]


def test_interval_is_uniform_float():
    d = one("interval(0.1, 0.3)")
    assert isinstance(d, FloatDistribution)
    assert (d.low, d.high, d.log, d.step) == (0.1, 0.3, False, None)
    d = one("interval(1, 3)")  # integer bounds still give floats
    assert isinstance(d, FloatDistribution) and (d.low, d.high) == (1.0, 3.0)


def test_tag_log_interval_is_log_float():
    d = one("tag(log, interval(1e-5, 1e-3))")
    assert isinstance(d, FloatDistribution)
    assert (d.low, d.high, d.log) == (1e-5, 1e-3, True)


def test_int_interval_is_randint():
    d = one("int(interval(4, 20))")
    assert isinstance(d, IntDistribution)
    assert (d.low, d.high, d.step, d.log) == (4, 20, 1, False)


def test_range_is_ordered_discrete():
    d = one("range(32, 257, 32)")
    assert isinstance(d, IntDistribution)
    assert (d.low, d.high, d.step) == (32, 256, 32)  # the stop is exclusive, as in Python
    d = one("range(1, 5)")
    assert (d.low, d.high, d.step) == (1, 4, 1)
    d = one("range(0.1, 0.5, 0.1)")
    assert isinstance(d, FloatDistribution)
    assert d.low == pytest.approx(0.1) and d.high == pytest.approx(0.4)
    assert d.step == pytest.approx(0.1)


def test_choice_of_numbers_strings_and_lists():
    d = one("choice(32, 64, 128)")
    assert isinstance(d, CategoricalDistribution) and d.choices == (32, 64, 128)
    d = one("choice(1e-4, 3e-4)")
    assert d.choices == (1e-4, 3e-4)
    d = one("choice(tanh, relu, elu)")
    assert d.choices == ("tanh", "relu", "elu")
    d = one("choice([64,64], [128,128])")
    assert len(d.choices) == 2
    # lists are encoded as strings for Optuna; decode gives back what the trial sees
    assert [_space.decode(c) for c in d.choices] == [[64, 64], [128, 128]]
    d = one("choice(true, false)")
    assert [_space.decode(c) for c in d.choices] == [True, False]


def test_decode():
    assert _space.decode("[64,64]") == [64, 64]
    assert _space.decode("tanh") == "tanh"
    assert _space.decode("true") is True and _space.decode("false") is False
    assert _space.decode(3) == 3 and _space.decode(0.5) == 0.5


def test_the_preset_space_parses():
    preset = OmegaConf.load(CONF / "search" / "ppo_cartpole.yaml")
    params = preset.hydra.sweeper.params
    space, fixed = _space.parse(params, [])
    assert set(space) == set(params) and fixed == []
    assert space["algo.lr"].log and isinstance(space["algo.training_epoch"], IntDistribution)


PARAMS = {"algo.lr": "tag(log, interval(1e-5, 1e-3))", "algo.gamma": "interval(0.9, 0.99)"}


def test_arguments_add_a_dimension():
    space, fixed = _space.parse(PARAMS, ["algo.lam=interval(0.7, 0.9)"])
    assert list(space) == ["algo.lr", "algo.gamma", "algo.lam"]
    assert (space["algo.lam"].low, space["algo.lam"].high) == (0.7, 0.9)
    assert fixed == []


def test_arguments_replace_a_dimension():
    space, fixed = _space.parse(PARAMS, ["algo.lr=choice(1e-4, 3e-4)"])
    assert isinstance(space["algo.lr"], CategoricalDistribution)
    assert space["algo.lr"].choices == (1e-4, 3e-4)
    assert isinstance(space["algo.gamma"], FloatDistribution)
    assert fixed == []


def test_arguments_fix_a_dimension():
    space, fixed = _space.parse(PARAMS, ["algo.lr=3e-4", "env.max_frame=2000", "+foo=1"])
    assert list(space) == ["algo.gamma"]
    assert [f.split("=")[0] for f in fixed] == ["algo.lr", "env.max_frame", "+foo"]
    assert float(fixed[0].split("=")[1]) == 3e-4  # Hydra may normalise how it is written
    assert fixed[1:] == ["env.max_frame=2000", "+foo=1"]


def test_a_later_argument_searches_a_fixed_value_again():
    space, fixed = _space.parse({}, ["algo.lr=3e-4", "algo.lr=interval(1e-4, 1e-3)"])
    assert list(space) == ["algo.lr"] and fixed == []


@pytest.mark.parametrize(
    ("params", "arguments", "dimension"),
    [
        ({"algo.lr": "interval(1e-3, 1e-4)"}, [], "algo.lr"),  # low > high
        ({"algo.lr": "tag(log, interval(1e-3, 1e-5))"}, [], "algo.lr"),
        ({}, ["algo.training_epoch=int(interval(20, 4))"], "algo.training_epoch"),
        ({}, ["algo.time_horizon=range(5, 1)"], "algo.time_horizon"),  # empty range
        ({"algo.lr": "foo(1, 2)"}, [], "algo.lr"),  # unknown function
        ({}, ["algo.lam=uniform(0.1, 0.2)"], "algo.lam"),
        ({}, ["algo.lam=interval(0.1, 0.2"], "algo.lam"),  # syntax
        ({}, ["algo.lr=tag(log, interval(0, 1e-3))"], "algo.lr"),  # log of 0
    ],
)
def test_bad_dimensions_give_one_line_naming_the_dimension(params, arguments, dimension):
    with pytest.raises(ConfigError) as e:
        _space.parse({"algo.gamma": "interval(0.9, 0.99)", **params}, arguments)
    message = str(e.value)
    assert "\n" not in message
    assert f"'{dimension}=" in message
    assert "algo.gamma" not in message  # the good dimension is not blamed


def config(**choices):
    return OmegaConf.create(
        {
            "hydra": {"runtime": {"choices": {"env": "cartpole", "algo": "ppo", **choices}}},
            "algo": {
                "lr": 1e-3,
                "gamma": 0.98,
                "training_epoch": 20,
                "time_horizon": 32,
                "hid_layers": [64, 64],
                "activation": "tanh",
                "shared": False,
            },
            "env": {"max_frame": 2000},
        }
    )


def test_prior_encodes_values_in_the_space():
    space, _ = _space.parse(
        {
            "algo.lr": "tag(log, interval(1e-5, 1e-3))",  # the upper bound is inside
            "algo.gamma": "interval(0.95, 0.999)",
            "algo.training_epoch": "int(interval(4, 20))",
            "algo.time_horizon": "range(32, 257, 32)",
            "algo.hid_layers": "choice([32,32], [64,64])",
            "algo.activation": "choice(relu, tanh)",
            "algo.shared": "choice(true, false)",
            "env": "choice(acrobot, cartpole)",  # a config group
        },
        [],
    )
    prior = _space.prior(space, config(), {})
    assert prior == {
        "algo.lr": 1e-3,
        "algo.gamma": 0.98,
        "algo.training_epoch": 20,
        "algo.time_horizon": 32,
        "algo.hid_layers": "[64,64]",  # the choice itself, as Optuna stores it
        "algo.activation": "tanh",
        "algo.shared": False,
        "env": "cartpole",
    }
    for name, value in prior.items():  # every value is one the distribution accepts
        assert space[name]._contains(space[name].to_internal_repr(value))


def test_prior_leaves_out_values_outside_the_space():
    space, _ = _space.parse(
        {
            "algo.lr": "tag(log, interval(1e-5, 5e-4))",  # 1e-3 is above
            "algo.gamma": "interval(0.99, 0.999)",  # 0.98 is below
            "algo.training_epoch": "int(interval(4, 10))",  # 20 is above
            "algo.time_horizon": "range(16, 257, 64)",  # 32 is off the step
            "algo.hid_layers": "choice([32,32], [128,128])",
            "algo.activation": "choice(relu, elu)",
            "env": "choice(acrobot, pendulum)",
            "algo.lam": "interval(0.8, 0.9)",  # not in the config at all
        },
        [],
    )
    assert _space.prior(space, config(), {}) == {}


def test_prior_values_override_the_config_values():
    space, _ = _space.parse(PARAMS, [])
    prior = _space.prior(space, config(), {"algo.lr": 2e-4})
    assert prior["algo.lr"] == 2e-4


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"algo.gamma": 0.5}, ["algo.gamma=0.5", "outside"]),  # below the gamma interval
        ({"algo.nosuch": 1}, ["algo.nosuch", "unsearched"]),
    ],
)
def test_prior_values_outside_the_space_are_refused(values, words):
    space, _ = _space.parse(PARAMS, [])
    with pytest.raises(ConfigError) as e:
        _space.prior(space, config(), values)
    assert all(w in str(e.value) for w in words), e.value


@pytest.mark.parametrize(
    ("dimension", "ok"),
    [
        ("interval(-1, 2)", False),
        ("interval(0, 1)", False),  # gamma 0 is outside (0, 1]
        ("interval(0.9, 1)", True),
        ("choice(0.99, 1.5)", False),
    ],
)
def test_searched_bounds_stay_in_the_hyperparameter_domain(dimension, ok):
    space, _ = _space.parse({"algo.gamma": dimension}, [])
    if ok:
        _space.check_domains(space)
    else:
        with pytest.raises(ConfigError, match=r"algo.gamma.*\(0, 1\]"):
            _space.check_domains(space)


def test_a_changed_space_is_described_by_its_first_changed_dimension():
    before, _ = _space.parse(PARAMS, [])
    assert _space.changed(before, before) == ""
    now, _ = _space.parse(PARAMS, ["algo.lr=interval(1e-4, 1e-3)"])
    assert _space.changed(before, now).startswith("algo.lr was tag(log, interval(")
    assert "now interval(0.0001, 0.001)" in _space.changed(before, now)
    fewer = {k: v for k, v in before.items() if k != "algo.gamma"}
    assert _space.changed(before, fewer).startswith("algo.gamma is no longer searched")
    assert _space.changed(fewer, before) == "algo.gamma is searched now but was not before"


def test_grid_of_discrete_dimensions():
    space, _ = _space.parse(
        {
            "a": "choice(1, 2)",
            "b": "choice([64,64], [128,128])",
            "c": "range(32, 129, 32)",
            "d": "int(interval(1, 3))",
            "e": "range(0.1, 0.4, 0.1)",
        },
        [],
    )
    grid = _space.grid(space)
    assert grid["a"] == [1, 2]
    assert [_space.decode(v) for v in grid["b"]] == [[64, 64], [128, 128]]
    assert grid["c"] == [32, 64, 96, 128]
    assert grid["d"] == [1, 2, 3]
    assert grid["e"] == pytest.approx([0.1, 0.2, 0.3])
    assert math.prod(len(v) for v in grid.values()) == 2 * 2 * 4 * 3 * 3


@pytest.mark.parametrize("expr", ["interval(0.1, 0.3)", "tag(log, interval(1e-5, 1e-3))"])
def test_grid_refuses_a_continuous_dimension(expr):
    space, _ = _space.parse({"a": "choice(1, 2)", "algo.lr": expr}, [])
    with pytest.raises(
        ConfigError, match=r"algo.lr=.* is continuous: search it as 'algo.lr=ordered"
    ):
        _space.grid(space)


def test_discretise_is_the_prior_and_values_towards_each_end():
    log = FloatDistribution(1e-5, 1e-3, log=True)
    assert _space.discretise(log, 1e-4) == [1e-5, 3.16e-5, 1e-4, 3.16e-4, 1e-3]
    assert _space.discretise(log, 1e-3) == [1e-5, 3.16e-5, 1e-4, 3.16e-4, 1e-3]  # at an end
    assert _space.discretise(FloatDistribution(0.1, 0.3)) == [0.1, 0.15, 0.2, 0.25, 0.3]
    assert _space.discretise(FloatDistribution(0.1, 0.3), 0.15, side=1) == [0.1, 0.15, 0.3]


@pytest.mark.parametrize(
    ("dimension", "words"),
    [
        ("algo.training_epoch=ordered(4, 8, x)", ["algo.training_epoch", "'x'", "an integer"]),
        ("algo.time_horizon=interval(32, 256)", ["draws floats", "int(interval(...))"]),
        ("algo.activation=choice(tanh, 1)", ["algo.activation", "1", "a string"]),
        ("algo.hid_layers=choice([64], 64)", ["algo.hid_layers", "64", "a list"]),
        ("algo.shared=choice(true, 0)", ["algo.shared", "true or false"]),
        ("algo.lr=choice(1e-3, abc)", ["algo.lr", "'abc'", "a number"]),
    ],
)
def test_every_searched_value_has_the_type_of_the_key_in_the_config(dimension, words):
    space, _ = _space.parse({}, [dimension])
    values = _space.as_values(space, _space.ordered({}, [dimension]))
    with pytest.raises(ConfigError) as e:
        _space.check_types(values, config())
    assert all(w in str(e.value) for w in words), e.value


def test_values_of_the_keys_type_pass_ints_included_for_floats():
    args = ["algo.lr=choice(1, 1e-3)", "algo.training_epoch=int(interval(2, 6))"]
    space, _ = _space.parse({}, args)
    _space.check_types(space, config())
