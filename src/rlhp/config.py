"""Checks of a composed configuration, shared by the train entry point and the sweeper: every
check of a config runs here, once, before anything is launched (the env and agent constructors
trust it)."""

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlhp import asha
from rlhp.errors import ConfigError

# the domain of every numeric hyperparameter of conf/algo/*.yaml, as an interval
DOMAINS = {
    "lr": "(0, inf)",
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


def outside(name: str, value: Any) -> str | None:
    """The domain of hyperparameter `name` (e.g. `algo.lr`) when `value` lies outside it."""
    domain = DOMAINS.get(name.removeprefix("algo.")) if name.startswith("algo.") else None
    if domain is None or not isinstance(value, int | float) or isinstance(value, bool):
        return None
    low, high = (float(x) for x in domain[1:-1].split(","))
    above = value > low if domain[0] == "(" else value >= low
    below = value < high if domain[-1] == ")" else value <= high
    return None if above and below and not math.isnan(value) else domain


def check(cfg: DictConfig) -> None:
    """Raise ConfigError (one line) for a configuration that cannot run."""
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
    try:
        asha.settings(cfg)  # the coordinator's own check (check_settings), before launch
    except ValueError as e:
        raise ConfigError(f"meta.search_scheduler: {e}") from None
    for key in DOMAINS:
        value = OmegaConf.select(cfg.algo, key, default=None)
        if (domain := outside(f"algo.{key}", value)) is not None:
            raise ConfigError(f"algo.{key}={value} is outside its domain {domain}")
    if cfg.env.type not in ("gym", "atari"):
        raise ConfigError(f"env.type must be gym or atari, got {cfg.env.type!r}")
    check_env_id(cfg.env.id, cfg.env.name)
    env = gym.make(cfg.env.id)
    algo.check(cfg.algo.name, env.action_space, cfg)
    env.close()
