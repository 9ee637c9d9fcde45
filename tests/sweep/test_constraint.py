"""Constraint expressions: a small safe language over parameter names, parsed with `ast`."""

import pytest

from rlhp.errors import ConfigError
from rlhp.sweep import _constraint

VALUES = {
    "algo.lr": 6e-4,
    "algo.clip_eps": 0.3,
    "algo.time_horizon": 32,
    "algo.minibatch_size": 256,
    "algo.hid_layers_activation": "tanh",
    "algo.shared": False,
    "env.num_envs": 8,
    "seed": 3,
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # names and numbers, every comparison
        ("algo.lr > 5e-4", True),
        ("algo.lr >= 6e-4", True),
        ("algo.lr < 5e-4", False),
        ("algo.lr <= 5e-4", False),
        ("algo.time_horizon == 32", True),
        ("algo.time_horizon != 32", False),
        ("1e-4 < algo.lr < 1e-3", True),  # chained
        ("1e-4 < algo.lr < 5e-4", False),
        ("1e-3 < algo.lr < 1e-2", False),
        # and / or / not
        ("algo.lr > 5e-4 and algo.clip_eps > 0.25", True),
        ("algo.lr > 5e-4 and algo.clip_eps > 0.35", False),
        ("algo.lr > 1e-3 or algo.clip_eps > 0.25", True),
        ("algo.lr > 1e-3 or algo.clip_eps > 0.35", False),
        ("not algo.lr > 5e-4", False),
        ("not algo.shared", True),
        ("not (algo.lr > 1e-3 or seed == 4)", True),
        # arithmetic
        ("algo.minibatch_size > algo.time_horizon * env.num_envs", False),
        ("algo.minibatch_size == algo.time_horizon * env.num_envs", True),
        ("algo.minibatch_size / env.num_envs == algo.time_horizon", True),
        ("algo.minibatch_size // 5 == 51", True),
        ("algo.minibatch_size % 5 == 1", True),
        ("algo.time_horizon + seed - 1 == 34", True),
        ("-algo.time_horizon == -32 and +seed == 3", True),
        ("2 ** seed == 8", True),
        # strings and booleans
        ("algo.hid_layers_activation == 'tanh'", True),
        ("algo.hid_layers_activation == 'relu'", False),
        ("algo.shared == False", True),
        ("algo.shared or True", True),
    ],
)
def test_evaluate_on_hand_made_values(expr, expected):
    _constraint.check([expr], VALUES)
    assert _constraint.evaluate(expr, VALUES) is expected


def test_names_are_the_dotted_parameters_used():
    expr = "algo.minibatch_size > algo.time_horizon * env.num_envs and seed < 2"
    assert _constraint.names(expr) == {
        "algo.minibatch_size",
        "algo.time_horizon",
        "env.num_envs",
        "seed",
    }


def test_violated_returns_the_first_matching_expression():
    exprs = ["algo.lr > 1e-3", "algo.clip_eps > 0.25", "seed == 3"]
    assert _constraint.violated(exprs, VALUES) == "algo.clip_eps > 0.25"
    assert _constraint.violated(exprs[:1], VALUES) is None
    assert _constraint.violated([], VALUES) is None


def test_evaluation_depends_on_the_values():
    expr = "algo.lr > 8e-4 and algo.clip_eps > 0.25"
    assert not _constraint.evaluate(expr, {"algo.lr": 5e-4, "algo.clip_eps": 0.3})
    assert _constraint.evaluate(expr, {"algo.lr": 9e-4, "algo.clip_eps": 0.3})
    assert not _constraint.evaluate(expr, {"algo.lr": 9e-4, "algo.clip_eps": 0.2})


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os')",  # call
        "__import__('os').system('true')",
        "open('x')",
        "abs(algo.lr) > 1",
        "(1).real",  # attribute access on something that is not a name
        "'abc'.upper() == 'ABC'",
        "algo.lr.__class__.__mro__[1]",  # subscript
        "env.id[0] == 'C'",
        "(lambda: 1)() == 1",  # lambda
        "[x for x in (1, 2)]",  # comprehensions
        "{x for x in (1, 2)}",
        "{x: x for x in (1, 2)}",
        "any(x > 1 for x in (1, 2))",
        "[1, 2] == [1, 2]",  # containers
        "algo.lr if seed else 0",  # conditional expression
        "seed in (1, 2)",  # membership
        "seed is None",  # identity
        "~seed == 1",  # bitwise operators
        "seed & 1",
        "seed << 2 > 1",
        "f'{seed}' == '3'",  # f-strings
        "None == seed",  # None is not a number, name, string or boolean
        "(seed := 1)",  # assignment expression
    ],
)
def test_unsafe_expressions_are_refused(expr):
    known = [*VALUES, "os", "open", "abs", "x", "any", "None"]
    with pytest.raises(ConfigError) as e:
        _constraint.check([expr], known)
    assert "\n" not in str(e.value)
    assert repr(expr) in str(e.value)


@pytest.mark.parametrize("expr", ["import os", "algo.lr >", "x = 1", "algo.lr > 1; seed"])
def test_statements_and_syntax_errors_are_refused(expr):
    with pytest.raises(ConfigError, match="not an expression"):
        _constraint.check([expr], VALUES)


def test_unknown_names_are_refused():
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\): \['algo.nosuch'\]"):
        _constraint.check(["algo.lr > 1e-4", "algo.nosuch > 1 and algo.lr > 0"], VALUES)
    with pytest.raises(ConfigError, match="unknown parameter"):
        _constraint.check(["algo > 1"], VALUES)  # a prefix of a name is not a name
    with pytest.raises(ConfigError, match="unknown parameter"):
        _constraint.check(["lr > 1"], VALUES)  # nor is a suffix
    _constraint.check(["algo.lr > 1e-4"], VALUES)  # known names pass


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("algo.lr > 9**9**9", "cannot be evaluated"),  # a power too large to compute
        ("algo.hid_layers_activation * 10**9 == 'x'", "cannot be evaluated"),  # 1 GB string
        ("'a' * 10**9 == algo.lr", "no arithmetic on strings"),
        ("algo.lr > " + "+".join(["1"] * 50000), "longer than"),
        ("algo.lr > " + "-" * 40 + "1", "nested deeper"),
    ],
)
def test_resource_hungry_expressions_are_refused(expr, words):
    with pytest.raises(ConfigError, match=words):
        _constraint.names(expr)
        _constraint.evaluate(expr, VALUES)
