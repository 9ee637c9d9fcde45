"""Constraint expressions over parameter names, parsed with `ast` and never `eval`ed.

A constraint names a bad combination, e.g. `algo.lr > 5e-4 and algo.training_epoch > 8`: a
sampled configuration for which any constraint is true is rejected. Allowed: dotted parameter
names, numbers, strings, booleans, comparisons, and/or/not, and arithmetic.
"""

import ast
import operator
from collections.abc import Iterable, Mapping
from typing import Any

from rlhp.errors import ConfigError

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


def _dotted(node: ast.AST) -> str | None:
    """`algo.lr` for Attribute(Name('algo'), 'lr'); None for anything that is not a plain name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)) is not None:
        return f"{base}.{node.attr}"
    return None


def names(expr: str) -> set[str]:
    """The parameter names an expression uses; ConfigError if it is not a plain expression."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise ConfigError(f"constraint {expr!r} is not an expression: {e.msg}") from None
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if (name := _dotted(node)) is not None:
            found.add(name)
        elif isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool):
            pass
        elif isinstance(node, ast.BoolOp | ast.UnaryOp | ast.BinOp | ast.Compare):
            if isinstance(node, ast.UnaryOp) and type(node.op) not in _UNARY:
                raise ConfigError(f"constraint {expr!r}: operator not allowed")
            if isinstance(node, ast.BinOp) and type(node.op) not in _BINARY:
                raise ConfigError(f"constraint {expr!r}: operator not allowed")
            if isinstance(node, ast.Compare) and any(type(op) not in _COMPARE for op in node.ops):
                raise ConfigError(f"constraint {expr!r}: only ==, !=, <, <=, >, >= compare")
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, ast.operator | ast.boolop | ast.unaryop | ast.cmpop):
                    visit(child)
        else:
            what = type(node).__name__
            raise ConfigError(
                f"constraint {expr!r}: {what} is not allowed (only names, numbers, comparisons,"
                " and/or/not and arithmetic)"
            )

    visit(tree.body)
    return found


def check(exprs: Iterable[str], known: Iterable[str]) -> None:
    """ConfigError for the first expression that is unsafe or names an unknown parameter."""
    known = set(known)
    for expr in exprs:
        if unknown := sorted(names(expr) - known):
            raise ConfigError(f"constraint {expr!r} names unknown parameter(s): {unknown}")


def evaluate(expr: str, values: Mapping[str, Any]) -> bool:
    """Whether `expr` holds for the parameter values (call `check` first)."""

    def ev(node: ast.AST) -> Any:
        if (name := _dotted(node)) is not None:
            return values[name]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.BoolOp):
            results = (ev(v) for v in node.values)
            return all(results) if isinstance(node.op, ast.And) else any(results)
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = ev(right_node)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        raise ConfigError(f"constraint {expr!r}: cannot evaluate {type(node).__name__}")

    return bool(ev(ast.parse(expr.strip(), mode="eval").body))


def violated(exprs: Iterable[str], values: Mapping[str, Any]) -> str | None:
    """The first expression that holds for `values` (the configuration is rejected), or None."""
    return next((expr for expr in exprs if evaluate(expr, values)), None)
