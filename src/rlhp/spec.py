"""SLM-Lab specs in, search presets out: `python -m rlhp.spec import|narrow ...`.

- `import SPEC.json [SPEC_NAME] [-o conf/search/NAME.yaml]` turns an SLM-Lab spec into an rlhp
  preset: the algorithm, net, memory and env fields that have an rlhp name, `meta.max_trial`,
  `max_session`, `search_scheduler`, `search_resources`, and the `search` block (flat dotted keys
  or nested blocks; `__uniform`, `__loguniform`, `__randint` (upper end excluded, as in
  SLM-Lab), `__choice`, `__grid_search`). Fields with no rlhp counterpart are listed in the
  preset's header and on stderr.
- `narrow SWEEP [--top_k 5] -o conf/search/NAME.yaml` writes stage 2 of SLM-Lab's coarse-to-fine
  search: ranges spanning the top-k configurations of a finished search (log-aware, padded),
  more sessions per trial, no ASHA. Stage 3 is `python -m rlhp.validate`.
"""

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, IntDistribution

from rlhp.analysis import experiment_df
from rlhp.config import outside
from rlhp.record import AnalysisError, load
from rlhp.sweep._space import decode

CONF = Path(__file__).resolve().parents[2] / "conf"
if not CONF.is_dir():  # installed: conf ships inside the package
    CONF = Path(__file__).resolve().parent / "conf"

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


class SpecError(Exception):
    """A spec or sweep that cannot be turned into a preset."""


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


def import_spec(path: Path, name: str | None = None) -> tuple[str, str, list[str]]:
    """(preset name, preset YAML, fields not carried over) of one spec in an SLM-Lab file."""
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
    spec = specs[name]
    flat = _flatten({k: v for k, v in spec.items() if k in ("agent", "env", "meta")})
    algo_name = flat.get("agent.algorithm.name") or flat.get("agent.name")
    if algo_name not in ALGOS:
        raise SpecError(f"algorithm {algo_name!r} has no rlhp counterpart ({', '.join(ALGOS)})")
    algo = ALGOS[algo_name]
    env = _env_group(str(flat.get("env.name")))
    algo_keys = {
        f"algo.{k}" for k in _leaves(yaml.safe_load((CONF / "algo" / f"{algo}.yaml").read_text()))
    }
    policy = flat.get("agent.algorithm.action_policy")
    values: dict[str, Any] = {}
    dropped: list[str] = []
    if algo_name == "DoubleDQN":
        values["algo.double"] = True
    constant = {
        p.rpartition(".")[0] for p, v in flat.items() if p.endswith(".name") and v == "no_decay"
    }
    for path_, value in flat.items():
        short = path_.removeprefix("agent.")
        owner = path_.rpartition(".")[0]
        if (
            value is None
            or short.startswith(STRUCTURAL)
            or (owner in constant and not path_.endswith(".start_val"))
        ):
            continue
        key = _rlhp_key(path_, algo_keys, policy)
        if key is not None and (why := _unfit(key, [value])):
            dropped.append(f"{path_}: {json.dumps(value)} ({why})")
        elif key is None or values.get(key, value) != value:
            dropped.append(f"{path_}: {json.dumps(value)}")
        else:
            values[key] = value
    meta = spec.get("meta", {})
    params: dict[str, str] = {}
    grids = 0
    for path_, value in _flatten(spec.get("search", {})).items():
        stem, _, kind = path_.rpartition("__")
        if kind not in SPACES:
            dropped.append(f"search.{path_}: space {kind!r} not supported ({', '.join(SPACES)})")
            continue
        if (key := _rlhp_key(stem, algo_keys, policy)) is None:
            dropped.append(f"search.{path_}: {json.dumps(value)}")
            continue
        if why := _unfit(key, value if kind in ("choice", "grid_search") else value[:2]):
            dropped.append(f"search.{path_}: {json.dumps(value)} ({why})")
            continue
        if key in params:
            dropped.append(f"search.{path_}: {key} is searched already")
            continue
        params[key] = _dimension(kind, value)
        grids += kind == "grid_search"
    preset: dict[str, Any] = {"defaults": [{"override /algo": algo}, {"override /env": env}]}
    if params and grids == len(params):
        preset["defaults"].append({"override /hydra/sweeper/sampler": "grid"})
    for key, value in values.items():
        node = preset
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    if meta.get("search_scheduler") or meta.get("search_resources"):
        out_meta = preset.setdefault("meta", {})
        if scheduler := meta.get("search_scheduler"):
            out_meta["search_scheduler"] = scheduler
        if resources := meta.get("search_resources"):
            out_meta["search_resources"] = {"cpu": 1, "gpu": 0, "mem_gb": 4, "time_min": 240}
            out_meta["search_resources"].update(resources)
    sweeper: dict[str, Any] = {"n_trials": meta.get("max_trial", 20), "params": params}
    preset["hydra"] = {"sweep": {"dir": f"multirun/{name}"}, "sweeper": sweeper}
    header = [
        "# @package _global_",
        f"# SLM-Lab spec {name!r} from {Path(path).name} (python -m rlhp.spec import)",
        f"#   python -m rlhp.train -m +search={name}",
    ]
    if dropped:
        header.append("# not carried over (no rlhp counterpart):")
        header += [f"#   {d}" for d in dropped]
    return name, "\n".join(header) + "\n" + _yaml(preset), dropped


def _yaml(data: dict) -> str:
    """Block YAML with flow-style leaf lists (hid_layers: [64, 64])."""

    class Dumper(yaml.SafeDumper):
        pass

    def flow_list(dumper, items):
        flow = all(not isinstance(x, dict | list) for x in items)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)

    Dumper.add_representer(list, flow_list)
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100)


# -- stage 2: narrow a finished search


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


def narrow(
    sweep_dir: Path,
    name: str,
    top_k: int = 5,
    sessions: int = 4,
    n_trials: int = 12,
    pad: float = 0.1,
) -> str:
    """The stage-2 preset of a search (see the module doc) as YAML text."""
    sweep = load(Path(sweep_dir))
    df = experiment_df(sweep)
    top = df[df["state"] == "complete"].head(top_k)
    if len(top) < 2:
        raise SpecError(f"{sweep_dir}: narrowing needs 2 complete trials, it has {len(top)}")
    best = int(top.iloc[0]["trial"])
    cfg_path = sweep.trial_dir(best) / ".hydra" / "config.yaml"
    hydra_path = sweep.trial_dir(best) / ".hydra" / "hydra.yaml"
    if not cfg_path.is_file() or not hydra_path.is_file():
        raise SpecError(f"trial {best} has no .hydra/config.yaml: cannot write the preset")
    cfg = OmegaConf.to_container(OmegaConf.load(cfg_path), resolve=True)
    hydra = OmegaConf.load(hydra_path).hydra
    choices = hydra.runtime.choices
    params = {k: _narrow(d, list(top[k]), pad) for k, d in sweep.space.items()}
    for name, values in sweep.ordered.items():  # the span of the top values, in their order
        at = [[decode(v) for v in values].index(v) for v in top[name]]
        span = values[min(at) : max(at) + 1]
        params[name] = f"ordered({', '.join(map(str, span))})" if len(span) > 1 else span[0]
    searched = set(sweep.space)

    def unsearched(node: dict, prefix: str) -> dict:
        out = {}
        for key, value in node.items():
            if key == "name" or f"{prefix}.{key}" in searched:
                continue
            if isinstance(value, dict):
                value = unsearched(value, f"{prefix}.{key}")
            out[key] = value
        return out

    resources = cfg.get("meta", {}).get("search_resources")
    preset: dict[str, Any] = {
        "defaults": [{"override /algo": choices["algo"]}, {"override /env": choices["env"]}],
        "algo": unsearched(cfg["algo"], "algo"),
        "env": unsearched(cfg["env"], "env"),
        "max_session": sessions,
        "log_frequency": cfg["log_frequency"],
        "eval_episodes": cfg.get("eval_episodes", 0),
        "objective": cfg.get("objective", "final"),
        "meta": {"search_scheduler": None, "search_resources": resources},
        "hydra": {
            "sweep": {"dir": f"multirun/{name}"},
            "sweeper": {
                "n_trials": n_trials,
                "params": params,
                "constraints": list(OmegaConf.select(hydra, "sweeper.constraints", default=[])),
            },
        },
    }
    ranges = ", ".join(str(int(t)) for t in top["trial"])
    header = [
        "# @package _global_",
        f"# Stage 2 of the search in {sweep.dir}: ranges span its top {len(top)} trials "
        f"({ranges}),",
        f"# padded by {pad:g} of their span, with {sessions} sessions a trial and no ASHA.",
        f"#   python -m rlhp.train -m +search={name}",
        f"# then stage 3: python -m rlhp.validate multirun/{name}",
    ]
    return "\n".join(header) + "\n" + _yaml(preset)


# -- the command line


def _write(text: str, out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise SpecError(f"{out} exists; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhp.spec", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="an SLM-Lab spec as an rlhp search preset")
    imp.add_argument("spec", type=Path)
    imp.add_argument("spec_name", nargs="?")
    imp.add_argument("-o", "--output", type=Path, help="default: conf/search/SPEC_NAME.yaml")
    nar = sub.add_parser("narrow", help="stage 2: a preset spanning a search's top-k trials")
    nar.add_argument("sweep_dir", type=Path)
    nar.add_argument("-o", "--output", type=Path, required=True)
    nar.add_argument("--top_k", type=int, default=5)
    nar.add_argument("--sessions", type=int, default=4)
    nar.add_argument("--n_trials", type=int, default=12)
    nar.add_argument("--pad", type=float, default=0.1)
    for p in (imp, nar):
        p.add_argument("--force", action="store_true", help="replace an existing output file")
    args = parser.parse_args(argv)
    try:
        if args.command == "import":
            name, text, dropped = import_spec(args.spec, args.spec_name)
            out = args.output or Path("conf/search") / f"{name}.yaml"
            _write(text, out, args.force)
            for d in dropped:
                print(f"rlhp.spec: not carried over: {d}", file=sys.stderr)
        else:
            if args.top_k < 2:
                raise SpecError(f"--top_k must be at least 2, got {args.top_k}")
            out = args.output
            _write(
                narrow(
                    args.sweep_dir, out.stem, args.top_k, args.sessions, args.n_trials, args.pad
                ),
                out,
                args.force,
            )
            name = out.stem
    except (SpecError, AnalysisError, OSError) as e:
        print(f"rlhp: error: {e}", file=sys.stderr)
        return 2
    print(
        f"rlhp.spec: wrote {out}; search it with "
        f"python -m rlhp.train -m --config-dir {out.parent.parent} +search={name}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
