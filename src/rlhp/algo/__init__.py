"""Algorithms by `algo.name`, one module each that reads top to bottom. Each is a stacked agent of
K members (`make`; rlhp.population trains it, K = 1 included). What they share: the on-policy
rollout, GAE and agent skeleton (`rollout`), the replay memory (`replay`), linear annealing and
the gradient steps due (`_schedule`)."""

import importlib
from types import SimpleNamespace
from typing import TYPE_CHECKING

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

from rlhp.errors import ConfigError

if TYPE_CHECKING:  # rlhp.config.check uses this module before launch, in a process without torch
    import torch

# name -> (module, class, action spaces it can act in)
ALGOS = {
    "ppo": ("rlhp.algo.ppo", "PPO", (gym.spaces.Discrete, gym.spaces.Box)),
    "a2c": ("rlhp.algo.a2c", "A2C", (gym.spaces.Discrete, gym.spaces.Box)),
    "reinforce": ("rlhp.algo.reinforce", "REINFORCE", (gym.spaces.Discrete, gym.spaces.Box)),
    "dqn": ("rlhp.algo.dqn", "DQN", (gym.spaces.Discrete,)),
    "sac": ("rlhp.algo.sac", "SAC", (gym.spaces.Box,)),
}


OPTIMIZERS = ("adam", "rmsprop")  # what A2C's `optimizer` may name (rlhp.optim.make)


def check(name: str, action_space: gym.Space | None = None, cfg: DictConfig | None = None) -> None:
    """Raise ConfigError if the algorithm is unknown, cannot act in `action_space`, or cannot
    train the composed config `cfg` (SAC takes vector observations, A2C names its optimiser).
    rlhp.config.check calls it before anything is launched; nothing after it checks again."""
    if name not in ALGOS:
        raise ConfigError(f"unknown algo {name!r}; known: {', '.join(sorted(ALGOS))}")
    spaces = ALGOS[name][2]
    if action_space is not None and not isinstance(action_space, spaces):
        kinds = " or ".join(s.__name__ for s in spaces)
        raise ConfigError(
            f"algo {name} needs {kinds} actions, but the env's action space is {action_space}"
        )
    if cfg is None:
        return
    if name == "sac" and cfg.env.net != "mlp":
        raise ConfigError(f"algo sac takes vector observations (env.net=mlp), not {cfg.env.net}")
    if name == "a2c" and cfg.algo.optimizer not in OPTIMIZERS:
        raise ConfigError(
            f"algo.optimizer must be {' or '.join(OPTIMIZERS)}, got {cfg.algo.optimizer!r}"
        )


def plain(cfg: DictConfig) -> SimpleNamespace:
    """The hyperparameters as plain attributes: DictConfig lookups cost microseconds a step."""
    return SimpleNamespace(**OmegaConf.to_container(cfg, resolve=True))


def make(cfgs: list[DictConfig], env, device: "torch.device"):
    """The stacked agent of `cfgs` (one per member, sharing their structure) acting in `env` (a
    rlhp.env.VecEnv of as many members)."""
    cfg = cfgs[0]
    module, cls, _ = ALGOS[cfg.algo.name]
    agent_cls = getattr(importlib.import_module(module), cls)
    return agent_cls([c.algo for c in cfgs], env, cfg.env.net, cfg.env.max_frame, device)
