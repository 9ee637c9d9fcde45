"""Constraint expressions over parameter names, checked with `ast`, evaluated by `simpleeval`.

A constraint names a bad combination, e.g. `algo.lr > 5e-4 and algo.training_epoch > 8`: a
sampled configuration for which any constraint is true is rejected. Allowed: dotted parameter
names, numbers, strings, booleans, comparisons, and/or/not, and arithmetic on numbers, in an
expression of at most MAX_LENGTH characters nested at most MAX_DEPTH deep; simpleeval bounds
powers and the size of what an operation builds.
"""

import ast
import operator
from collections.abc import Iterable, Mapping
from typing import Any

from simpleeval import DEFAULT_OPERATORS, InvalidExpression, SimpleEval

from rlhp.errors import ConfigError

MAX_LENGTH = 1000
MAX_DEPTH = 32

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


# simpleeval's own (size-bounded) implementations of the operators allowed
_OPERATORS = {op: DEFAULT_OPERATORS[op] for op in (*_BINARY, *_UNARY, *_COMPARE)}


def _dotted(node: ast.AST) -> str | None:
    """`algo.lr` for Attribute(Name('algo'), 'lr'); None for anything that is not a plain name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)) is not None:
        return f"{base}.{node.attr}"
    return None


def names(expr: str) -> set[str]:
    """The parameter names an expression uses; ConfigError if it is not a plain expression."""
    if len(expr) > MAX_LENGTH:
        raise ConfigError(f"constraint {expr[:40]!r}...: longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise ConfigError(f"constraint {expr!r} is not an expression: {e.msg}") from None
    except RecursionError:
        raise ConfigError(f"constraint {expr!r}: nested deeper than {MAX_DEPTH}") from None
    found: set[str] = set()

    def visit(node: ast.AST, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ConfigError(f"constraint {expr!r}: nested deeper than {MAX_DEPTH}")
        if (name := _dotted(node)) is not None:
            found.add(name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool):
            pass
        elif isinstance(node, ast.BoolOp | ast.UnaryOp | ast.BinOp | ast.Compare):
            if isinstance(node, ast.UnaryOp) and type(node.op) not in _UNARY:
                raise ConfigError(f"constraint {expr!r}: operator not allowed")
            if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY:
                raise ConfigError(f"constraint {expr!r}: operator not allowed")
            if isinstance(node, ast.BinOp) and any(
                isinstance(side, ast.Constant) and isinstance(side.value, str)
                for side in (node.left, node.right)
            ):
                raise ConfigError(f"constraint {expr!r}: no arithmetic on strings")
            if isinstance(node, ast.Compare) and any(type(op) not in _COMPARE for op in node.ops):
                raise ConfigError(f"constraint {expr!r}: only ==, !=, <, <=, >, >= compare")
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, ast.operator | ast.boolop | ast.unaryop | ast.cmpop):
                    visit(child, depth + 1)
        else:
            what = type(node).__name__
            raise ConfigError(
                f"constraint {expr!r}: {what} is not allowed (only names, numbers, comparisons,"
                " and/or/not and arithmetic)"
            )

    visit(tree.body, 0)
    return found


def check(exprs: Iterable[str], known: Iterable[str]) -> None:
    """ConfigError for the first expression that is unsafe or names an unknown parameter."""
    known = set(known)
    for expr in exprs:
        if unknown := sorted(names(expr) - known):
            raise ConfigError(f"constraint {expr!r} names unknown parameter(s): {unknown}")


def _nested(values: Mapping[str, Any]) -> dict[str, Any]:
    """{"algo.lr": 1} -> {"algo": {"lr": 1}}: simpleeval reads `algo.lr` as an item of `algo`."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        *parents, leaf = name.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[leaf] = value
    return out


def evaluate(expr: str, values: Mapping[str, Any]) -> bool:
    """Whether `expr` holds for the parameter values (call `check` first); ConfigError for an
    expression that cannot be evaluated on them (too large a number or string, bad types)."""
    evaluator = SimpleEval(operators=_OPERATORS, functions={}, names=_nested(values))
    try:
        return bool(evaluator.eval(expr.strip()))
    except (InvalidExpression, ArithmeticError, TypeError, ValueError, RecursionError) as e:
        raise ConfigError(f"constraint {expr!r} cannot be evaluated: {e}") from None


def violated(exprs: Iterable[str], values: Mapping[str, Any]) -> str | None:
    """The first expression that holds for `values` (the configuration is rejected), or None."""
    return next((expr for expr in exprs if evaluate(expr, values)), None)
