"""The search space, written in the Hydra Optuna sweeper's grammar.

`interval(a, b)` uniform, `tag(log, interval(a, b))` log-uniform, `int(interval(a, b))` randint,
`range(a, b[, step])` ordered discrete values, `choice(...)` categorical (lists too). Parsing is
the Optuna sweeper's own, so a search written for it reads the same here. rlhp adds
`ordered(v1, v2, ...)`: any values in a given order, searched as their index (an integer
dimension, so TPE, GP, QMC, the grid and DGD use the order), and passed to trials as the values.
"""

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from rlhp.config import is_int, outside, wrong_type
from rlhp.errors import ConfigError
from rlhp.record import decode
from rlhp.sweep._foreign import distribution


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "while evaluating" in ln or "mismatched input" in ln]
    return (useful or lines or [type(e).__name__])[-1]


_ORDERED = re.compile(r"^([^=]+)=\s*ordered\((.*)\)\s*$", re.DOTALL)


def _ordered_line(line: str, parser: OverridesParser) -> tuple[str, list] | None:
    """(key, values) of an `ordered(...)` dimension, None for any other line."""
    if (m := _ORDERED.match(line)) is None:
        return None
    key, body = m[1].strip(), m[2]
    try:
        dist = distribution(parser.parse_override(f"{key}=choice({body})"))
    except Exception as e:
        raise ConfigError(f"bad search dimension {line!r}: {_first_line(e)}") from None
    if len(dist.choices) < 2:
        raise ConfigError(f"bad search dimension {line!r}: ordered(...) needs two values or more")
    return key, list(dist.choices)


def ordered(params: Mapping[str, str], arguments: list[str]) -> dict[str, list]:
    """The values of every `ordered(...)` dimension of the space `parse` reads, by name."""
    out: dict[str, list] = {}
    parser = OverridesParser.create()
    for line in [f"{k}={v}" for k, v in params.items()] + list(arguments):
        if (found := _ordered_line(line, parser)) is not None:
            out[found[0]] = found[1]
        else:
            out.pop(line.split("=", 1)[0].lstrip("~+").strip(), None)
    return out


def as_values(
    space: Mapping[str, BaseDistribution], ordered: Mapping[str, list]
) -> dict[str, BaseDistribution]:
    """The space with each ordered dimension as the categorical of its values (for checks
    and priors that read values, not indices)."""
    return {k: CategoricalDistribution(ordered[k]) if k in ordered else d for k, d in space.items()}


def parse(params: Mapping[str, str], arguments: list[str]) -> tuple[dict, list[str]]:
    """(distributions by dotted name, fixed overrides passed to every trial).

    `params` (the preset's space) come first; command-line `arguments` add dimensions, replace
    them, or fix a searched parameter to one value. An `ordered(...)` dimension is the integer
    index of its values (`ordered` gives them).
    """
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    parser = OverridesParser.create()
    for line in [f"{k}={v}" for k, v in params.items()] + list(arguments):
        if (found := _ordered_line(line, parser)) is not None:
            space[found[0]] = IntDistribution(0, len(found[1]) - 1)
            fixed.pop(found[0], None)
            continue
        try:
            override = parser.parse_override(line)
            value = distribution(override)
        except Exception as e:
            raise ConfigError(f"bad search dimension {line!r}: {_first_line(e)}") from None
        if override.is_delete():
            fixed[line] = ""
            continue
        key = override.get_key_element()
        if isinstance(value, BaseDistribution):
            space[key] = value
            fixed.pop(key, None)
        else:
            fixed[key] = value
            space.pop(key, None)
    return space, [k if v == "" else f"{k}={v}" for k, v in fixed.items()]


def check_paths(space: Mapping[str, BaseDistribution], config: DictConfig) -> None:
    """ConfigError for a searched path the composed config does not have (a wasted dimension)."""
    groups = set(config.hydra.runtime.choices)
    for name in space:
        if name.startswith("+") or name in groups:
            continue
        if OmegaConf.select(config, name, default=KeyError) is KeyError:
            raise ConfigError(f"searched parameter {name!r} does not exist in the composed config")


def check_domains(space: Mapping[str, BaseDistribution]) -> None:
    """ConfigError for a searched value outside its hyperparameter's domain (lr > 0, ...) or
    of the wrong type (a string for training_epoch, an empty hid_layers, ...)."""
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            values = [decode(c) for c in dist.choices]
        else:
            values = [dist.low, dist.high]
        for value in values:
            if isinstance(dist, CategoricalDistribution) and (kind := wrong_type(name, value)):
                raise ConfigError(f"searched {name} holds {value!r}, but {name} must be {kind}")
            if (domain := outside(name, value)) is not None:
                raise ConfigError(
                    f"searched {name}={describe(dist)} leaves its domain {domain} at {value}"
                )


def kind(value: Any) -> str | None:
    """The type of a config value in words, which a searched value must have; None: any."""
    if isinstance(value, bool):
        return "true or false"
    if is_int(value):
        return "an integer"
    kinds = {float: "a number", str: "a string", list: "a list", dict: "a mapping"}
    return next((w for t, w in kinds.items() if isinstance(value, t)), None)


def fits(value: Any, wanted: str) -> bool:
    """Whether `value` has the type `wanted` (kind's words); null always fits, ints are numbers."""
    return value is None or kind(value) == wanted or (wanted == "a number" and is_int(value))


def check_types(space: Mapping[str, BaseDistribution], config: DictConfig) -> None:
    """ConfigError for a searched value whose type is not that of the key's value in the
    composed config: every value of a choice or an ordered dimension, and floats drawn for an
    integer."""
    groups = set(config.hydra.runtime.choices)
    for name, dist in space.items():
        if name.startswith("+") or name in groups:
            continue
        current = OmegaConf.select(config, name, default=None)
        if (wanted := kind(_plain(current))) is None:
            continue
        if isinstance(dist, CategoricalDistribution):
            if bad := [v for v in map(decode, dist.choices) if not fits(v, wanted)]:
                raise ConfigError(
                    f"searched {name} holds {bad[0]!r}, but {name} is {wanted} "
                    f"({_plain(current)} in the config)"
                )
        elif wanted == "an integer" and isinstance(dist, FloatDistribution):
            raise ConfigError(
                f"searched {name}={describe(dist)} draws floats, but {name} is an integer: "
                "search it with int(interval(...)) or range(...)"
            )
        elif wanted not in ("an integer", "a number"):
            raise ConfigError(f"searched {name}={describe(dist)} draws numbers; {name} is {wanted}")


def _plain(value: Any) -> Any:
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def leaves(config: DictConfig, prefix: str = "") -> dict[str, Any]:
    """Every leaf value of the config (without hydra's node) by dotted name."""
    out = {}
    for key, value in config.items():
        if key == "hydra" and not prefix:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            out.update(leaves(value, f"{name}."))
        else:
            out[name] = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
    return out


def prior(
    space: Mapping[str, BaseDistribution], config: DictConfig, values: Mapping[str, Any]
) -> dict[str, Any]:
    """The prior trial: `values` (hydra.sweeper.prior_values) or the config's current values,
    where the space holds them."""
    if unknown := sorted(set(values) - set(space)):
        raise ConfigError(f"hydra.sweeper.prior_values names unsearched parameter(s): {unknown}")
    groups = config.hydra.runtime.choices
    out = {}
    for name, dist in space.items():
        if name in values:
            value = values[name]
            if _encode(dist, value) is None:
                raise ConfigError(
                    f"hydra.sweeper.prior_values.{name}={value} is outside its search space "
                    f"{describe(dist)}"
                )
        elif name in groups:
            value = groups[name]
        else:
            value = OmegaConf.select(config, name.lstrip("+"), default=None)
            value = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
        if (encoded := _encode(dist, value)) is not None:
            out[name] = encoded
    return out


def _encode(dist: BaseDistribution, value: Any) -> Any:
    """`value` in the distribution's own representation, or None if the space does not hold it."""
    if value is None:
        return None
    if isinstance(dist, CategoricalDistribution):
        return next((c for c in dist.choices if decode(c) == value), None)
    if isinstance(dist, IntDistribution | FloatDistribution) and isinstance(value, int | float):
        if not dist.low <= value <= dist.high:
            return None
        if dist.step is not None and abs((value - dist.low) / dist.step % 1) > 1e-9:
            return None
        return int(value) if isinstance(dist, IntDistribution) else float(value)
    return None


def discretise(dist: FloatDistribution, prior: float | None = None, side: int = 2) -> list[float]:
    """Values for a continuous dimension as an `ordered(...)` one: the prior (the middle of
    the range without one) and `side` values evenly spaced towards each end (in log space for
    a log dimension; 2 * side towards the other end from a prior at one end), the ends
    included, at 3 significant digits."""
    to, back = (np.log, np.exp) if dist.log else (float, float)
    low, high = to(dist.low), to(dist.high)
    mid = to(prior) if prior is not None and dist.low <= prior <= dist.high else (low + high) / 2
    n_below = 0 if mid == low else 2 * side if mid == high else side
    n_above = 0 if mid == high else 2 * side if mid == low else side
    below = np.linspace(low, mid, n_below + 1)[:-1]
    above = np.linspace(mid, high, n_above + 1)[1:]
    return [float(f"{back(x):.3g}") for x in [*below, mid, *above]]


def grid(space: Mapping[str, BaseDistribution], prior: Mapping[str, Any] | None = None):
    """The search space of a grid sampler (grid, dgd): each dimension's values in order;
    ConfigError for a continuous dimension, with an `ordered(...)` that discretises it."""
    out: dict[str, list] = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            out[name] = list(dist.choices)
        elif isinstance(dist, IntDistribution):
            out[name] = list(range(dist.low, dist.high + 1, dist.step))
        elif dist.step is not None:
            n = round((dist.high - dist.low) / dist.step)
            out[name] = [dist.low + i * dist.step for i in range(n + 1)]
        else:
            values = ", ".join(map(str, discretise(dist, (prior or {}).get(name))))
            raise ConfigError(
                f"grid and dgd search discrete dimensions, and {name}={describe(dist)} is "
                f"continuous: search it as '{name}=ordered({values})' (or choice, range)"
            )
    return out


def describe(dist: BaseDistribution) -> str:
    """A distribution in the search grammar, e.g. `tag(log, interval(0.0001, 0.001))`."""
    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(str(c) for c in dist.choices)})"
    if dist.step is not None and (isinstance(dist, FloatDistribution) or dist.step != 1):
        return f"range({dist.low}, {dist.high}, {dist.step})"
    text = f"interval({dist.low}, {dist.high})"
    text = f"int({text})" if isinstance(dist, IntDistribution) else text
    return f"tag(log, {text})" if dist.log else text


def changed(before: Mapping[str, BaseDistribution], now: Mapping[str, BaseDistribution]) -> str:
    """The first difference between two search spaces in words; '' when they are the same."""
    for name in [*before, *now]:
        if name not in now:
            return f"{name} is no longer searched (was {describe(before[name])})"
        if name not in before:
            return f"{name} is searched now but was not before"
        if before[name] != now[name]:
            return f"{name} was {describe(before[name])}, now {describe(now[name])}"
    return ""
