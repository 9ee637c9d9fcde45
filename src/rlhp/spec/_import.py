"""Stage 0: an SLM-Lab spec as an rlhp search preset (`python -m rlhp.spec import`)."""

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from rlhp.config import outside
from rlhp.spec._preset import CONF, SpecError, to_yaml

ALGOS = {
    "PPO": "ppo",
    "A2C": "a2c",
    "ActorCritic": "a2c",
    "DQN": "dqn",
    "DoubleDQN": "dqn",
    "SAC": "sac",
    "Reinforce": "reinforce",
    "REINFORCE": "reinforce",
}
# SLM-Lab path under the agent (or the spec root for env/meta) -> rlhp key
FIELDS = {
    "algorithm.gamma": "algo.gamma",
    "algorithm.lam": "algo.lam",
    "algorithm.clip_eps_spec.start_val": "algo.clip_eps",
    "algorithm.entropy_coef_spec.start_val": "algo.entropy_coef",
    "algorithm.val_loss_coef": "algo.val_loss_coef",
    "algorithm.time_horizon": "algo.time_horizon",
    "algorithm.minibatch_size": "algo.minibatch_size",
    "algorithm.training_epoch": "algo.training_epoch",
    "algorithm.training_iter": "algo.training_iter",
    "algorithm.training_frequency": "algo.training_frequency",
    "algorithm.training_start_step": "algo.learning_starts",
    "algorithm.explore_var_spec.start_val": "algo.explore_var_spec.start",
    "algorithm.explore_var_spec.end_val": "algo.explore_var_spec.end",
    "algorithm.explore_var_spec.end_step": "algo.explore_var_spec.end_step",
    "algorithm.normalize_advantage": "algo.normalize_advantage",
    "memory.batch_size": "algo.batch_size",
    "memory.max_size": "algo.memory_size",
    "memory.alpha": "algo.alpha_per",
    "memory.beta": "algo.beta",
    "net.hid_layers": "algo.hid_layers",
    "net.hid_layers_activation": "algo.hid_layers_activation",
    "net.clip_grad_val": "algo.clip_grad_val",
    "net.shared": "algo.shared",
    "net.optim_spec.lr": "algo.lr",
    "net.actor_optim_spec.lr": "algo.lr",
    "net.critic_optim_spec.lr": "algo.lr",  # rlhp has one lr: carried over when it is the same
    "net.update_frequency": "algo.target_update_frequency",
    "net.polyak_coef": "algo.tau",
    "env.num_envs": "env.num_envs",
    "env.max_frame": "env.max_frame",
    "meta.max_session": "max_session",
    "meta.log_frequency": "log_frequency",
}
# fields that only name things rlhp chooses otherwise (the algo/env groups, its own nets)
STRUCTURAL = (
    "name",
    "algorithm.name",
    "memory.name",
    "net.type",
    "net.gpu",
    "env.name",
    "meta.distributed",
    "meta.max_trial",
    "meta.search_scheduler",
    "meta.search_resources",
)
SPACES = ("uniform", "loguniform", "randint", "choice", "grid_search")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths of a nested spec block; a list of agents/envs counts as its first one."""
    if isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
        node = node[0]
    if not isinstance(node, dict) or not node:
        return {prefix.rstrip("."): node}
    out = {}
    for key, value in node.items():
        if key.endswith(tuple(f"__{s}" for s in SPACES)) or not isinstance(value, dict | list):
            out[f"{prefix}{key}"] = value
        else:
            out.update(_flatten(value, f"{prefix}{key}."))
    return out


def _env_group(gym_id: str) -> str:
    """The rlhp env group whose id is gym_id (any version, Atari's NoFrameskip names too)."""

    def base(i: str) -> str:
        return i.removeprefix("ALE/").split("-v")[0].removesuffix("NoFrameskip").lower()

    for path in sorted((CONF / "env").glob("*.yaml")):
        if base(str(OmegaConf.load(path).id)) == base(gym_id):
            return path.stem
    raise SpecError(f"env {gym_id!r} has no rlhp env group (conf/env/*.yaml)")


def _dimension(kind: str, args: Any) -> str:
    """An SLM-Lab search space in the Optuna sweeper grammar."""
    if kind in ("choice", "grid_search"):
        return f"choice({', '.join(json.dumps(a).replace(' ', '') for a in args)})"
    low, high = args
    if kind == "uniform":
        return f"interval({low}, {high})"
    if kind == "loguniform":
        return f"tag(log, interval({low}, {high}))"
    return f"int(interval({low}, {high - 1}))"  # randint: high excluded, as np/ray do


def _rlhp_key(path: str, algo_keys: set[str], policy: str | None) -> str | None:
    """The rlhp key of an SLM-Lab path under the spec root, if rlhp has one for this algo
    (explore_var_spec is epsilon only with an epsilon-greedy action policy)."""
    key = FIELDS.get(path.removeprefix("agent."))
    if key is None or (key.startswith("algo.") and key not in algo_keys):
        return None
    if key.startswith("algo.explore_var_spec") and policy not in (None, "epsilon_greedy"):
        return None
    return key


def _unfit(key: str, values: list) -> str | None:
    """Why rlhp cannot take these values for `key` (outside its domain), or None."""
    if key == "algo.hid_layers_activation":
        from rlhp.net import ACTIVATIONS

        bad = [v for v in values if v not in ACTIVATIONS]
        return f"rlhp has {', '.join(ACTIVATIONS)}" if bad else None
    domains = {outside(key, v) for v in values} - {None}
    return f"outside rlhp's domain {domains.pop()}" if domains else None


def _leaves(cfg: Any, prefix: str = "") -> set[str]:
    out = set()
    for key, value in cfg.items():
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
        out.add(f"{prefix}{key}")
    return out


def _read(path: Path, name: str | None) -> tuple[str, dict]:
    """(name, spec) of one spec in an SLM-Lab file; `name` may be left out if it holds one."""
    try:
        specs = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SpecError(f"cannot read {path}: {e}") from None
    if name is None:
        if len(specs) != 1:
            raise SpecError(f"{path} holds {len(specs)} specs; name one of: {', '.join(specs)}")
        name = next(iter(specs))
    if name not in specs:
        raise SpecError(f"{path} has no spec {name!r}; it has: {', '.join(specs)}")
    return name, specs[name]


def _fixed(flat: dict[str, Any], key_of: Callable[[str], str | None]) -> tuple[dict, list[str]]:
    """(rlhp key -> value, fields not carried over) of a spec's fixed fields."""
    values: dict[str, Any] = {}
    dropped: list[str] = []
    constant = {
        p.rpartition(".")[0] for p, v in flat.items() if p.endswith(".name") and v == "no_decay"
    }
    for path, value in flat.items():
        owner = path.rpartition(".")[0]
        if (
            value is None
            or path.removeprefix("agent.").startswith(STRUCTURAL)
            or (owner in constant and not path.endswith(".start_val"))
        ):
            continue
        key = key_of(path)
        if key is not None and (why := _unfit(key, [value])):
            dropped.append(f"{path}: {json.dumps(value)} ({why})")
        elif key is None or values.get(key, value) != value:
            dropped.append(f"{path}: {json.dumps(value)}")
        else:
            values[key] = value
    return values, dropped


def _searched(
    search: dict[str, Any], key_of: Callable[[str], str | None]
) -> tuple[dict[str, str], bool, list[str]]:
    """(rlhp key -> dimension, whether every dimension is a grid search, fields not carried
    over) of a spec's `search` block."""
    params: dict[str, str] = {}
    grids = 0
    dropped: list[str] = []
    for path, value in _flatten(search).items():
        stem, _, kind = path.rpartition("__")
        if kind not in SPACES:
            dropped.append(f"search.{path}: space {kind!r} not supported ({', '.join(SPACES)})")
            continue
        if (key := key_of(stem)) is None:
            dropped.append(f"search.{path}: {json.dumps(value)}")
            continue
        if why := _unfit(key, value if kind in ("choice", "grid_search") else value[:2]):
            dropped.append(f"search.{path}: {json.dumps(value)} ({why})")
            continue
        if key in params:
            dropped.append(f"search.{path}: {key} is searched already")
            continue
        params[key] = _dimension(kind, value)
        grids += kind == "grid_search"
    return params, bool(params) and grids == len(params), dropped


def _search_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The spec's search_scheduler and search_resources (rlhp's defaults filling the rest)."""
    out: dict[str, Any] = {}
    if scheduler := meta.get("search_scheduler"):
        out["search_scheduler"] = scheduler
    if resources := meta.get("search_resources"):
        out["search_resources"] = {"cpu": 1, "gpu": 0, "mem_gb": 4, "time_min": 240, **resources}
    return out


def import_spec(path: Path, name: str | None = None) -> tuple[str, str, list[str]]:
    """(preset name, preset YAML, fields not carried over) of one spec in an SLM-Lab file."""
    name, spec = _read(path, name)
    flat = _flatten({k: v for k, v in spec.items() if k in ("agent", "env", "meta")})
    algo_name = flat.get("agent.algorithm.name") or flat.get("agent.name")
    if algo_name not in ALGOS:
        raise SpecError(f"algorithm {algo_name!r} has no rlhp counterpart ({', '.join(ALGOS)})")
    algo, env = ALGOS[algo_name], _env_group(str(flat.get("env.name")))
    algo_yaml = yaml.safe_load((CONF / "algo" / f"{algo}.yaml").read_text())
    algo_keys = {f"algo.{k}" for k in _leaves(algo_yaml)}
    policy = flat.get("agent.algorithm.action_policy")
    key_of = partial(_rlhp_key, algo_keys=algo_keys, policy=policy)
    values, dropped = _fixed(flat, key_of)
    if algo_name == "DoubleDQN":
        values = {"algo.double": True, **values}
    params, all_grid, dropped_search = _searched(spec.get("search", {}), key_of)
    dropped += dropped_search
    meta = spec.get("meta", {})
    defaults = [{"override /algo": algo}, {"override /env": env}]
    if all_grid:
        defaults.append({"override /hydra/sweeper/sampler": "grid"})
    fixed = OmegaConf.create()
    for key, value in values.items():
        OmegaConf.update(fixed, key, value)
    preset: dict[str, Any] = {"defaults": defaults, **OmegaConf.to_container(fixed)}
    if search_meta := _search_meta(meta):
        preset["meta"] = search_meta
    sweeper = {"n_trials": meta.get("max_trial", 20), "params": params}
    preset["hydra"] = {"sweep": {"dir": f"multirun/{name}"}, "sweeper": sweeper}
    header = [
        "# @package _global_",
        f"# SLM-Lab spec {name!r} from {Path(path).name} (python -m rlhp.spec import)",
        f"#   python -m rlhp.train -m +search={name}",
    ]
    if dropped:
        header.append("# not carried over (no rlhp counterpart):")
        header += [f"#   {d}" for d in dropped]
    return name, "\n".join(header) + "\n" + to_yaml(preset), dropped
