"""Checks of a composed configuration, shared by the train entry point and the sweeper: every
check of a config runs here, once, before anything is launched (the env and agent constructors
trust it)."""

import math
import re
from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from rlhp import asha
from rlhp.errors import ConfigError

# The hyperparameters a population holds per member ([K] values), by algorithm; with FREE, the
# config keys that may differ between the members of one population. Every other value is
# structural: it changes tensor shapes or the loop's schedule, and members share it.
MEMBER_KEYS = {
    "ppo": (
        "gamma", "lam", "clip_eps", "clip_eps_anneal", "entropy_coef", "val_loss_coef", "lr",
        "lr_anneal", "clip_grad_val",
    ),
    "a2c": ("gamma", "lam", "entropy_coef", "val_loss_coef", "lr", "lr_anneal", "clip_grad_val"),
    "dqn": (
        "gamma", "lr", "lr_anneal", "clip_grad_val", "learning_starts", "training_frequency",
        "training_iter", "target_update_frequency", "tau", "explore_var_spec.start",
        "explore_var_spec.end", "explore_var_spec.end_step", "double", "alpha_per", "beta",
    ),
    "sac": (
        "gamma", "lr", "tau", "alpha", "auto_alpha", "clip_grad_val", "learning_starts",
        "training_frequency", "training_iter",
    ),
    "reinforce": (
        "gamma", "lr", "lr_anneal", "batch_episodes", "entropy_coef", "val_loss_coef",
        "clip_grad_val",
    ),
}  # fmt: skip
FREE = ("seed", "meta", "env.eval_epsilon")


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"algo": {"lr": 1e-3}} -> {"algo.lr": 1e-3}; lists and None stay values."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def is_member_key(algo: str, key: str) -> bool:
    """Whether config key `key` (dotted) may differ between the members of a population."""
    keys = [*(f"algo.{k}" for k in MEMBER_KEYS[algo]), *FREE]
    return any(key == k or key.startswith(f"{k}.") for k in keys)


def signature(cfg: DictConfig) -> dict:
    """What two configs must share to train in one population: every value but the per-member
    hyperparameters, the seed and the search metadata (as flat `key: value`)."""
    items = flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in items.items() if not is_member_key(cfg.algo.name, k)}


def check_structure(cfgs: list[DictConfig]) -> None:
    """Raise ConfigError naming the first key in which a config differs structurally, and the
    algorithm's per-member keys."""
    first = signature(cfgs[0])
    for i, cfg in enumerate(cfgs[1:], 1):
        other = signature(cfg)
        for key in sorted(first.keys() | other.keys()):
            if first.get(key) != other.get(key):
                name = cfgs[0].algo.name
                raise ConfigError(
                    f"configs 0 and {i} differ in {key} ({first.get(key)!r} vs "
                    f"{other.get(key)!r}), which is structural: they cannot share a population "
                    f"(per member in {name}: {', '.join(MEMBER_KEYS[name])}, seed)"
                )


def population_size(population: int, n_trials: int) -> tuple[int, str | None]:
    """hydra.sweeper.population capped at n_trials (a job never holds more trials than the
    search has), with the warning when it was capped."""
    if population <= n_trials:
        return population, None
    note = (
        f"hydra.sweeper.population={population} is more than n_trials={n_trials}: population "
        f"jobs of {n_trials} trials"
    )
    return n_trials, note


# the domain of every numeric hyperparameter of conf/algo/*.yaml, as an interval; an lr above 1
# trains to nothing (or diverges) with Adam and RMSprop
DOMAINS = {
    "lr": "(0, 1]",
    "gamma": "(0, 1]",
    "lam": "[0, 1]",
    "clip_eps": "(0, inf)",
    "entropy_coef": "[0, inf)",
    "val_loss_coef": "[0, inf)",
    "time_horizon": "[1, inf)",
    "minibatch_size": "[1, inf)",
    "training_epoch": "[1, inf)",
    "clip_grad_val": "(0, inf)",
    "batch_size": "[1, inf)",
    "batch_episodes": "[1, inf)",
    "memory_size": "[1, inf)",
    "learning_starts": "[0, inf)",
    "training_frequency": "[1, inf)",
    "training_iter": "[1, inf)",
    "target_update_frequency": "[1, inf)",
    "tau": "(0, 1]",
    "alpha": "(0, inf)",
    "alpha_per": "[0, inf)",
    "beta": "[0, 1]",
    "explore_var_spec.start": "[0, 1]",
    "explore_var_spec.end": "[0, 1]",
    "explore_var_spec.end_step": "[1, inf)",
}
# the hyperparameters of DOMAINS that count something (integers), and those null switches off
INTEGERS = {
    "time_horizon",
    "minibatch_size",
    "training_epoch",
    "batch_size",
    "batch_episodes",
    "memory_size",
    "learning_starts",
    "training_frequency",
    "training_iter",
    "target_update_frequency",
    "explore_var_spec.end_step",
}
NULLABLE = {"clip_grad_val"}
HID_LAYERS = "a non-empty list of layer widths (integers >= 1)"
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def outside(name: str, value: Any) -> str | None:
    """The domain of hyperparameter `name` (e.g. `algo.lr`) when `value` lies outside it."""
    domain = DOMAINS.get(name.removeprefix("algo.")) if name.startswith("algo.") else None
    if domain is None or not isinstance(value, int | float) or isinstance(value, bool):
        return None
    low, high = (float(x) for x in domain[1:-1].split(","))
    above = value > low if domain[0] == "(" else value >= low
    below = value < high if domain[-1] == ")" else value <= high
    return None if above and below and not math.isnan(value) else domain


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def wrong_type(name: str, value: Any) -> str | None:
    """What hyperparameter `name` (e.g. `algo.training_epoch`) must be when `value` is not
    of its type (`an integer`, ...); None when it is, or when rlhp does not know its type."""
    key = name.removeprefix("algo.") if name.startswith("algo.") else None
    if isinstance(value, ListConfig):
        value = OmegaConf.to_object(value)
    if key == "hid_layers":
        widths = isinstance(value, list) and all(is_int(w) and w >= 1 for w in value)
        return None if widths and value else HID_LAYERS
    if key not in DOMAINS or (value is None and key in NULLABLE):
        return None
    if key in INTEGERS:
        return None if is_int(value) else "an integer"
    return None if is_int(value) or isinstance(value, float) else "a number"


def device_problem(name: Any, here: bool) -> str | None:
    """Why `device=name` cannot train (not a device rlhp knows, or, when the run trains `here`,
    a CUDA device this machine lacks); None when it can."""
    if not DEVICE.fullmatch(str(name)):
        return f"device must be auto, cpu, cuda or cuda:N, got {name!r}"
    if not here or not str(name).startswith("cuda"):
        return None
    import torch  # only to ask for CUDA: a search's controller has no other use for it

    if not torch.cuda.is_available():
        return f"device={name}, but torch finds no CUDA GPU here; use device=auto or device=cpu"
    count, index = torch.cuda.device_count(), int(str(name).partition(":")[2] or 0)
    if index >= count:
        return (
            f"device={name}, but this machine has {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}"
        )
    return None


def shaped_objective(searched: Iterable[str], objective: str) -> str | None:
    """Why a search of the keys `searched` cannot rank on `objective`: env.kwargs (reward
    weights, ...) shape the training return that final and auc read, so the weights would score
    themselves; None when they are not searched or the objective is the unshaped eval return."""
    shaping = [k for k in searched if k.lstrip("+").startswith("env.kwargs.")]
    if not shaping or objective == "eval":
        return None
    return (
        f"searched {shaping[0]} shapes the training return that objective={objective} ranks "
        "on: use objective=eval (and eval_episodes>0), the greedy policy's return on the env's "
        "own reward"
    )


def check(cfg: DictConfig, here: bool = True, searched: Iterable[str] = ()) -> None:
    """Raise ConfigError (one line) for a configuration that cannot run; `here`: it trains on
    this machine (not on a cluster node), so its device must exist here; `searched`: the keys a
    search samples."""
    import gymnasium as gym

    from rlhp import algo
    from rlhp.env import check_env_id

    if missing := sorted(OmegaConf.missing_keys(cfg)):
        raise ConfigError(f"missing config value(s): {', '.join(missing)}")
    if cfg.env.max_frame <= 0:
        raise ConfigError(f"env.max_frame must be positive, got {cfg.env.max_frame}")
    if cfg.log_frequency <= 0 or cfg.max_session <= 0 or cfg.env.num_envs <= 0:
        raise ConfigError("log_frequency, max_session and env.num_envs must be positive")
    if cfg.objective not in ("final", "auc", "eval"):
        raise ConfigError(f"objective must be final, auc or eval, got {cfg.objective!r}")
    if cfg.eval_episodes < 0 or (cfg.objective == "eval" and cfg.eval_episodes == 0):
        raise ConfigError(
            f"eval_episodes must be >= 0, and > 0 for objective eval; got {cfg.eval_episodes}"
        )
    if problem := device_problem(cfg.device, here) or shaped_objective(searched, cfg.objective):
        raise ConfigError(problem)
    try:
        asha.settings(cfg)  # the coordinator's own check (check_settings), before launch
    except ValueError as e:
        raise ConfigError(f"meta.search_scheduler: {e}") from None
    for key in [*DOMAINS, "hid_layers"]:
        value = OmegaConf.select(cfg.algo, key, default=KeyError)
        if value is KeyError:  # not a hyperparameter of this algorithm
            continue
        if kind := wrong_type(f"algo.{key}", value):
            raise ConfigError(f"algo.{key} must be {kind}, got {_shown(value)}")
        if (domain := outside(f"algo.{key}", value)) is not None:
            raise ConfigError(f"algo.{key}={value} is outside its domain {domain}")
    if cfg.env.type not in ("gym", "atari"):
        raise ConfigError(f"env.type must be gym or atari, got {cfg.env.type!r}")
    check_env_id(cfg.env.id, cfg.env.name)
    kwargs = OmegaConf.to_container(cfg.env.kwargs) if cfg.env.get("kwargs") else {}
    if kwargs and cfg.env.type == "atari":
        raise ConfigError("env.kwargs is for gymnasium envs (env.type gym), not atari")
    try:
        env = gym.make(cfg.env.id, **kwargs)
    except TypeError as e:
        raise ConfigError(f"env.kwargs of {cfg.env.id}: {e}") from None
    algo.check(cfg.algo.name, env.action_space, cfg)
    env.close()


def _shown(value: Any) -> str:
    """A value as the user wrote it on the command line (strings quoted)."""
    return repr(OmegaConf.to_object(value) if OmegaConf.is_config(value) else value)
