"""Stage 2 of SLM-Lab's coarse-to-fine search: a preset spanning a finished search's top-k
trials (`python -m rlhp.spec narrow`)."""

import math
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, IntDistribution

from rlhp.analysis import experiment_df
from rlhp.record import Sweep, config_path, decode, hydra_path, load
from rlhp.spec._preset import SpecError, to_yaml


def _narrow(dist: Any, values: list, pad: float) -> str | Any:
    """A dimension spanning `values` padded by `pad` of their span on each side (in log space
    for log dimensions), clipped to the original range; one value fixes the dimension."""
    if isinstance(dist, CategoricalDistribution):
        kept = [c for c in dist.choices if decode(c) in values] or list(dist.choices)
        if len(kept) == 1:
            return kept[0]
        return f"choice({', '.join(str(c).replace(' ', '') for c in kept)})"
    log = dist.log
    f = math.log if log else float
    inv = math.exp if log else float
    lo, hi = f(min(values)), f(max(values))
    span = (hi - lo) or abs(hi) * 0.1 or 1.0
    lo = max(inv(lo - pad * span), dist.low)
    hi = min(inv(hi + pad * span), dist.high)
    if isinstance(dist, IntDistribution):
        lo, hi = math.floor(lo), math.ceil(hi)
        if lo == hi:
            return lo
        body = f"interval({lo}, {hi})"
        return f"int(tag(log, {body}))" if log else f"int({body})"
    body = f"interval({lo:.6g}, {hi:.6g})"
    return f"tag(log, {body})" if log else body


def _best_config(sweep: Sweep, number: int) -> tuple[dict, DictConfig]:
    """(resolved config, Hydra config) trial `number` ran with."""
    run_dir = sweep.trial_dir(number)
    if not config_path(run_dir).is_file() or not hydra_path(run_dir).is_file():
        raise SpecError(f"trial {number} has no .hydra/config.yaml: cannot write the preset")
    cfg = OmegaConf.to_container(OmegaConf.load(config_path(run_dir)), resolve=True)
    return cfg, OmegaConf.load(hydra_path(run_dir)).hydra


def _narrowed(sweep: Sweep, top: pd.DataFrame, pad: float) -> dict[str, Any]:
    """The space spanning the `top` trials: each dimension `_narrow`ed, each ordered dimension
    the span of the top values, in their order."""
    params = {k: _narrow(d, list(top[k]), pad) for k, d in sweep.space.items()}
    for key, values in sweep.ordered.items():
        at = [[decode(v) for v in values].index(v) for v in top[key]]
        span = values[min(at) : max(at) + 1]
        params[key] = f"ordered({', '.join(map(str, span))})" if len(span) > 1 else span[0]
    return params


def _unsearched(node: dict, prefix: str, searched: set[str]) -> dict:
    """The config block `node` (at `prefix`) without its searched keys and its name."""
    out = {}
    for key, value in node.items():
        if key == "name" or f"{prefix}.{key}" in searched:
            continue
        out[key] = (
            _unsearched(value, f"{prefix}.{key}", searched) if isinstance(value, dict) else value
        )
    return out


def narrow(
    sweep_dir: Path,
    name: str,
    top_k: int = 5,
    max_session: int = 4,
    n_trials: int = 12,
    pad: float = 0.1,
) -> str:
    """The stage-2 preset of a search (see the module doc) as YAML text."""
    sweep = load(Path(sweep_dir))
    df = experiment_df(sweep)
    top = df[df["state"] == "complete"].head(top_k)
    if len(top) < 2:
        raise SpecError(f"{sweep_dir}: narrowing needs 2 complete trials, it has {len(top)}")
    cfg, hydra = _best_config(sweep, int(top.iloc[0]["trial"]))
    choices, searched = hydra.runtime.choices, set(sweep.space)
    preset: dict[str, Any] = {
        "defaults": [{"override /algo": choices["algo"]}, {"override /env": choices["env"]}],
        "algo": _unsearched(cfg["algo"], "algo", searched),
        "env": _unsearched(cfg["env"], "env", searched),
        "max_session": max_session,
        "log_frequency": cfg["log_frequency"],
        "eval_episodes": cfg.get("eval_episodes", 0),
        "objective": cfg.get("objective", "final"),
        "meta": {
            "search_scheduler": None,
            "search_resources": cfg.get("meta", {}).get("search_resources"),
        },
        "hydra": {
            "sweep": {"dir": f"multirun/{name}"},
            "sweeper": {
                "n_trials": n_trials,
                "params": _narrowed(sweep, top, pad),
                "constraints": list(OmegaConf.select(hydra, "sweeper.constraints", default=[])),
            },
        },
    }
    ranges = ", ".join(str(int(t)) for t in top["trial"])
    header = [
        "# @package _global_",
        f"# Stage 2 of the search in {sweep.dir}: ranges span its top {len(top)} trials "
        f"({ranges}),",
        f"# padded by {pad:g} of their span, with {max_session} sessions a trial and no ASHA.",
        f"#   python -m rlhp.train -m +search={name}",
        f"# then stage 3: python -m rlhp.validate multirun/{name}",
    ]
    return "\n".join(header) + "\n" + to_yaml(preset)
