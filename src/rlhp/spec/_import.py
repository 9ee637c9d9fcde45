"""Stage 0: an SLM-Lab spec as an rlhp search preset (`python -m rlhp.spec import`).

The preset sets every value the spec fixes (a `no_decay` clip_eps and no `lr_scheduler_spec` turn
rlhp's annealing off), says which rlhp defaults still apply, and lists what it cannot carry
over; what rlhp already does (SmoothL1 for DQN, Adam, epsilon-greedy with linear decay) is not
listed. SLM-Lab's spec variables (`${env}`) take `--set` values or their `spec_params`."""

import itertools
import json
import re
import string
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
from omegaconf import OmegaConf

from rlhp.analysis.slm import FIELDS
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
# fields that only name things rlhp chooses otherwise (the algo/env groups, its own nets)
STRUCTURAL = (
    "name",
    "algorithm.name",
    "net.type",
    "net.gpu",
    "env.name",
    "meta.distributed",
    "meta.max_trial",
    "meta.search_scheduler",
    "meta.search_resources",
)
ALL = frozenset(ALGOS.values())
ADAM = frozenset({"ppo", "dqn", "sac", "reinforce", "a2c"})  # a2c: algo.optimizer
NATURE_CNN = [[32, 8, 4, 0, 1], [64, 4, 2, 0, 1], [64, 3, 1, 0, 1]]
# (SLM-Lab path, value) -> the algorithms that do this in rlhp too: not listed as dropped
IMPLIED: dict[tuple[str, Any], frozenset] = {
    ("net.loss_spec.name", "SmoothL1Loss"): frozenset({"dqn"}),
    ("net.loss_spec.name", "MSELoss"): ALL - {"dqn"},
    ("net.optim_spec.name", "Adam"): ADAM,
    ("net.actor_optim_spec.name", "Adam"): ADAM,
    ("net.critic_optim_spec.name", "Adam"): ADAM,
    ("algorithm.action_policy", "epsilon_greedy"): frozenset({"dqn"}),
    ("algorithm.action_policy", "default"): ALL - {"dqn"},
    ("algorithm.action_pdtype", "Argmax"): frozenset({"dqn"}),
    ("algorithm.action_pdtype", "default"): ALL - {"dqn"},
    ("algorithm.explore_var_spec.name", "linear_decay"): frozenset({"dqn"}),
    ("algorithm.explore_var_spec.start_step", 0): frozenset({"dqn"}),
    ("memory.name", "Replay"): frozenset({"dqn", "sac"}),
    ("memory.name", "OnPolicyReplay"): ALL - {"dqn", "sac"},
    ("memory.name", "OnPolicyBatchReplay"): ALL - {"dqn", "sac"},
    ("memory.use_cer", False): ALL,
    ("net.batch_norm", False): ALL,
    ("net.normalize", False): ALL,
    ("net.use_same_optim", False): ALL,
    ("net.conv_hid_layers", json.dumps(NATURE_CNN)): ALL,
    ("env.frame_op", "concat"): ALL,
    ("env.frame_op_len", 4): ALL,
    ("meta.rigorous_eval", 0): ALL,
    ("net.init_fn", "orthogonal_"): frozenset({"ppo", "a2c"}),
    ("net.optim_spec.name", "RMSprop"): frozenset({"a2c"}),
    ("net.actor_optim_spec.name", "RMSprop"): frozenset({"a2c"}),
    ("net.critic_optim_spec.name", "RMSprop"): frozenset({"a2c"}),
    ("memory.name", "PrioritizedReplay"): frozenset({"dqn"}),
    ("net.actor_optim_spec.alpha", 0.99): frozenset({"a2c"}),  # rlhp's RMSprop
    ("net.critic_optim_spec.alpha", 0.99): frozenset({"a2c"}),
    ("net.actor_optim_spec.eps", 1e-5): frozenset({"a2c"}),
    ("net.critic_optim_spec.eps", 1e-5): frozenset({"a2c"}),
}
GROUP_KEYS = ("algo.name", "env.name", "env.id", "env.type", "env.net")  # the groups' own
# fields _schedules reads: their path under the agent -> the values it reads (None: any)
READ: dict[str, tuple | None] = {
    "algorithm.clip_eps_spec.name": None,
    "algorithm.clip_eps_spec.end_val": None,
    "algorithm.clip_eps_spec.end_step": None,
    "algorithm.clip_eps_spec.start_step": (0,),
    "net.update_type": ("replace", "polyak"),
    "env.reward_scale": ("sign",),
}
SPACES = ("uniform", "loguniform", "randint", "choice", "grid_search")
BATCH_ITER = "agent.algorithm.training_batch_iter"
ITER = "agent.algorithm.training_iter"
SKIP = object()  # a field consumed by a rule: neither carried as is nor listed


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


def _base(gym_id: str) -> str:
    return gym_id.removeprefix("ALE/").split("-v")[0].removesuffix("NoFrameskip").lower()


def _env(gym_id: str) -> tuple[str, dict[str, Any], str | None]:
    """(rlhp env group, env values, note) of a gym id: its own group (any version, Atari's
    NoFrameskip names too), else `env.id` on the nearest group of its family."""
    values = {"env.sticky_action": 0.0} if "NoFrameskip-v4" in gym_id else {}
    for path in sorted((CONF / "env").glob("*.yaml")):
        if _base(str(OmegaConf.load(path).id)) == _base(gym_id):
            return path.stem, values, None
    from rlhp.env import check_env_id, extra

    if gym_id.endswith("NoFrameskip-v4") or gym_id.startswith("ALE/"):
        gym_id = f"ALE/{gym_id.split('NoFrameskip')[0].removeprefix('ALE/').split('-v')[0]}-v5"
    try:
        check_env_id(gym_id)
    except Exception as e:
        raise SpecError(f"env {gym_id!r}: {e}") from None
    spec = gym.spec(gym_id)
    family = extra(gym_id, spec.entry_point)
    if (
        group := {"atari": "breakout", "mujoco": "halfcheetah", "box2d": "lunar"}.get(family)
    ) is None:
        discrete = isinstance(spec.make().action_space, gym.spaces.Discrete)
        group = "cartpole" if discrete else "pendulum"  # classic control
    values.update({"env.id": gym_id, "env.name": _base(gym_id)})
    return group, values, f"env {gym_id} has no rlhp env group: imported as env={group} with it"


def _dimension(kind: str, args: Any, scale: int = 1) -> str:
    """An SLM-Lab search space in the Optuna sweeper grammar (integer values times `scale`)."""
    if kind in ("choice", "grid_search"):
        values = [a * scale if scale > 1 else a for a in args]
        return f"choice({', '.join(json.dumps(a).replace(' ', '') for a in values)})"
    low, high = args
    if kind == "uniform":
        return f"interval({low}, {high})"
    if kind == "loguniform":
        return f"tag(log, interval({low}, {high}))"
    if scale > 1:
        return f"range({low * scale}, {high * scale}, {scale})"
    return f"int(interval({low}, {high - 1}))"  # randint: high excluded, as np/ray do


def _rlhp_key(path: str, algo_keys: set[str], policy: str | None) -> str | None:
    """The rlhp key of an SLM-Lab path under the spec root, if rlhp has one for this algo
    (explore_var_spec is epsilon only with an epsilon-greedy action policy)."""
    key = FIELDS.get(path.removeprefix("agent."))
    if key == "algo.training_frequency" and key not in algo_keys:
        key = "algo.time_horizon"  # SLM-Lab's A2C: steps per env between updates
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


def _leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _expand(name: str, spec: dict, sets: dict[str, str]) -> list[tuple[str, dict]]:
    """(name, spec) with SLM-Lab's spec variables (`${env}`) substituted: `sets` (`--set`) fix
    a variable; one spec per combination of the `spec_params` values of the others, named as
    SLM-Lab names them (NAME_VALUE)."""
    params = {k: v for k, v in spec.pop("spec_params", {}).items() if k not in sets}
    template = string.Template(json.dumps(spec))
    wanted = {m[1] or m[2] for m in re.finditer(r"\$(?:\{(\w+)\}|(\w+))", template.template)}
    if missing := sorted(wanted - set(sets) - set(params)):
        raise SpecError(
            f"spec {name!r} uses the spec variable(s) {', '.join(missing)}: give each a value "
            f"with --set, e.g. --set {missing[0]}=VALUE"
        )
    out = []
    for values in itertools.product(*params.values()):
        suffix = "_".join(re.sub(r"[^\w-]", "_", str(v)) for v in values)
        one = json.loads(template.substitute({**sets, **dict(zip(params, values, strict=True))}))
        out.append((f"{name}_{suffix}" if suffix else name, one))
    return out


def _read(path: Path, name: str | None, sets: dict[str, str]) -> list[tuple[str, dict]]:
    """(name, spec) of one spec in an SLM-Lab file, its variables expanded (several specs for
    `spec_params`); `name` may be left out if the file holds one."""
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
    return _expand(name, specs[name], sets)


def _schedules(flat: dict[str, Any], algo: str, keys: set[str]) -> tuple[dict, list[str]]:
    """(rlhp values, fields not carried over) of SLM-Lab's schedules: clip_eps and lr constant
    or annealed linearly to 0 as the spec has them, target updates hard or Polyak, replay
    plain or prioritised."""
    values: dict[str, Any] = {}
    dropped: list[str] = []
    clip = flat.get("agent.algorithm.clip_eps_spec.name")
    if clip and "algo.clip_eps_anneal" in keys:
        values["algo.clip_eps_anneal"] = clip != "no_decay"
        end = flat.get("agent.algorithm.clip_eps_spec.end_val")
        if clip != "no_decay" and (clip != "linear_decay" or end):
            dropped.append(f"clip_eps_spec: {clip} to {end} (rlhp anneals linearly to 0)")
    if "algo.lr_anneal" in keys:
        lr = flat.get("agent.net.lr_scheduler_spec.name")  # none: a constant lr
        values["algo.lr_anneal"] = lr == "LinearToZero"
        if lr not in (None, "LinearToZero"):
            dropped.append(f"lr_scheduler_spec: {lr} (rlhp: constant or linear to 0)")
    if flat.get("env.reward_scale") == "sign":
        values["env.reward_clip"] = True
    update = flat.get("agent.net.update_type")
    if update == "replace" and "algo.tau" in keys:
        values["algo.tau"] = 1.0
    if flat.get("agent.memory.name") == "PrioritizedReplay" and "algo.prioritized" in keys:
        values["algo.prioritized"] = True
    optim = flat.get("agent.net.actor_optim_spec.name") or flat.get("agent.net.optim_spec.name")
    if "algo.optimizer" in keys and optim in ("Adam", "RMSprop"):
        values["algo.optimizer"] = optim.lower()
    return values, dropped


def _consumed(path: str, value: Any, flat: dict[str, Any], algo: str) -> bool:
    """Whether a fixed field is taken care of: structural, what rlhp does too, or read by a
    rule (_schedules, _gradient_steps)."""
    rel = path.removeprefix("agent.")
    plain = json.dumps(value) if isinstance(value, list) else value
    no_decay = flat.get(f"{path.rpartition('.')[0]}.name") == "no_decay"
    return (
        value is None
        or rel.startswith(STRUCTURAL)
        or algo in IMPLIED.get((rel, plain), ())
        or (no_decay and not path.endswith(".start_val"))
        or (path in (BATCH_ITER, ITER) and algo == "dqn")
        or rel.startswith("net.lr_scheduler_spec")
        or READ.get(rel, ()) is None
        or plain in READ.get(rel, ())
    )


def _fixed(
    flat: dict[str, Any], key_of: Callable[[str], str | None], algo: str
) -> tuple[dict, list[str]]:
    """(rlhp key -> value, fields not carried over) of a spec's fixed fields."""
    values: dict[str, Any] = {}
    dropped: list[str] = []
    for path, value in flat.items():
        if _consumed(path, value, flat, algo):
            continue
        key = key_of(path)
        if key is not None and (why := _unfit(key, [value])):
            dropped.append(f"{path}: {json.dumps(value)} ({why})")
        elif key is None or values.get(key, value) != value:
            dropped.append(f"{path}: {json.dumps(value)}")
        else:
            values[key] = value
    return values, dropped


def _gradient_steps(
    flat: dict[str, Any], search: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """DQN's gradient steps per training step: SLM-Lab's training_iter batches, each trained
    on training_batch_iter times, are rlhp's training_iter (a fresh batch each); a searched one
    of the two is the dimension of their product."""
    iters, batch_iters = flat.get(ITER, 1), flat.get(BATCH_ITER, 1)
    found = {
        stem: (path, kind)
        for path in search
        for stem, _, kind in [path.rpartition("__")]
        if stem in (ITER, BATCH_ITER)
    }
    dropped = []
    if len(found) == 2:
        path, _ = found.pop(BATCH_ITER)
        dropped.append(f"search.{path}: training_iter is searched (their product, rlhp's one)")
    if not found:
        return {"algo.training_iter": iters * batch_iters}, {}, dropped
    ((stem, (path, kind)),) = found.items()
    scale = batch_iters if stem == ITER else iters
    return {}, {"algo.training_iter": _dimension(kind, search[path], scale)}, dropped


def _searched(
    search: dict[str, Any], key_of: Callable[[str], str | None]
) -> tuple[dict[str, str], bool, list[str]]:
    """(rlhp key -> dimension, whether every dimension is a grid search, fields not carried
    over) of a spec's flattened `search` block."""
    params: dict[str, str] = {}
    grids = 0
    dropped: list[str] = []
    for path, value in search.items():
        stem, _, kind = path.rpartition("__")
        if kind not in SPACES:
            dropped.append(f"search.{path}: space {kind!r} not supported ({', '.join(SPACES)})")
            continue
        if (key := key_of(stem)) is None:
            dropped.append(f"search.{path}: {json.dumps(value)}")
            continue
        if key == "algo.hid_layers_activation":
            value = ["silu" if v == "swish" else v for v in value]
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


def _defaults(algo: str, env: str) -> dict[str, Any]:
    """The composed algo.* and env.* values of algo=ALGO env=ENV (tuned/ files applied)."""
    from hydra import compose, initialize_config_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with initialize_config_dir(config_dir=str(CONF), version_base=None):
            cfg = compose("config", overrides=[f"algo={algo}", f"env={env}"])
    composed = OmegaConf.to_container(cfg)
    return {k: v for k, v in _leaves({"algo": composed["algo"], "env": composed["env"]}).items()}


def _preset(spec: dict, preset: str) -> tuple[dict[str, Any], list[str], list[str], list[str]]:
    """(preset, fields not carried over, rlhp defaults that still apply, notes)."""
    flat = _flatten({k: v for k, v in spec.items() if k in ("agent", "env", "meta")})
    algo_name = flat.get("agent.algorithm.name") or flat.get("agent.name")
    if algo_name not in ALGOS:
        raise SpecError(f"algorithm {algo_name!r} has no rlhp counterpart ({', '.join(ALGOS)})")
    algo = ALGOS[algo_name]
    env, values, note = _env(str(flat.get("env.name")))
    defaults = _defaults(algo, env)
    keys = {k for k in defaults if k.startswith("algo.")}
    if flat.get("agent.net.hid_layers_activation") == "swish":
        flat["agent.net.hid_layers_activation"] = "silu"
    key_of = partial(_rlhp_key, algo_keys=keys, policy=flat.get("agent.algorithm.action_policy"))
    fixed, dropped = _fixed(flat, key_of, algo)
    rules, dropped_rules = _schedules(flat, algo, keys)
    search = _flatten(spec.get("search", {}))
    steps, steps_search, dropped_steps = {}, {}, []
    if algo == "dqn":
        steps, steps_search, dropped_steps = _gradient_steps(flat, search)
        search = {
            p: v for p, v in search.items() if p.rpartition("__")[0] not in (ITER, BATCH_ITER)
        }
    values = {**values, **rules, **fixed, **steps}
    if algo_name == "DoubleDQN":
        values["algo.double"] = True
    params, all_grid, dropped_search = _searched(search, key_of)
    params.update(steps_search)
    for key in params:
        values.pop(key, None)
    group_defaults = [{"override /algo": algo}, {"override /env": env}]
    if all_grid:
        group_defaults.append({"override /hydra/sweeper/sampler": "grid"})
    cfg = OmegaConf.create()
    for key, value in values.items():
        OmegaConf.update(cfg, key, value)
    out: dict[str, Any] = {"defaults": group_defaults, **OmegaConf.to_container(cfg)}
    meta = spec.get("meta", {})
    if search_meta := _search_meta(meta):
        out["meta"] = search_meta
    sweeper = {"n_trials": meta.get("max_trial", 20), "params": params}
    out["hydra"] = {"sweep": {"dir": f"multirun/{preset}"}, "sweeper": sweeper}
    apply = [
        f"{k}={json.dumps(v)}"
        for k, v in defaults.items()
        if k not in values and k not in params and k not in GROUP_KEYS
    ]
    return out, dropped + dropped_rules + dropped_steps + dropped_search, apply, [note] * bool(note)


def train_command(out: Path) -> str:
    """The command that searches the preset written to `out`."""
    conf = out.resolve().parent.parent
    where = "" if conf == CONF.resolve() else f" --config-dir {conf}"
    return f"python -m rlhp.train -m{where} +search={out.stem}"


def import_spec(
    path: Path, name: str | None = None, sets: dict[str, str] | None = None, out: Path | None = None
) -> list[tuple[Path, str, list[str], list[str]]]:
    """(output file, preset YAML, fields not carried over, notes) of each spec one spec of an
    SLM-Lab file expands to; the file is `out`, or conf/search/NAME.yaml here."""
    specs = _read(path, name, sets or {})
    if out is not None and len(specs) > 1:
        raise SpecError(f"spec_params expand to {len(specs)} presets; leave out -o")
    written = []
    for spec_name, spec in specs:
        file = out or Path("conf/search") / f"{spec_name}.yaml"
        preset, dropped, apply, notes = _preset(spec, file.stem)
        header = [
            "# @package _global_",
            f"# SLM-Lab spec {spec_name!r} from {Path(path).name} (python -m rlhp.spec import)",
            f"#   {train_command(file)}",
            *[f"# {n}" for n in notes],
        ]
        if dropped:
            header.append("# not carried over (no rlhp counterpart):")
            header += [f"#   {d}" for d in dropped]
        if apply:
            header.append("# rlhp defaults that still apply (the spec does not set them):")
            header += [f"#   {a}" for a in apply]
        notes = notes + [f"rlhp defaults that still apply: {', '.join(apply)}"] * bool(apply)
        written.append((file, "\n".join(header) + "\n" + to_yaml(preset), dropped, notes))
    return written
