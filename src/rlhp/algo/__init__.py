"""Algorithms by `algo.name`; each module reads top to bottom on its own. PPO and A2C are
stacked agents of K members (rlhp.population trains them), the others single agents on
rlhp.loop's Session."""

import importlib

import gymnasium as gym
import torch
from omegaconf import DictConfig

from rlhp.errors import ConfigError

# name -> (module, class, action spaces it can act in)
ALGOS = {
    "ppo": ("rlhp.algo.ppo", "PPO", (gym.spaces.Discrete, gym.spaces.Box)),
    "a2c": ("rlhp.algo.a2c", "A2C", (gym.spaces.Discrete, gym.spaces.Box)),
    "reinforce": ("rlhp.algo.reinforce", "REINFORCE", (gym.spaces.Discrete, gym.spaces.Box)),
    "dqn": ("rlhp.algo.dqn", "DQN", (gym.spaces.Discrete,)),
    "sac": ("rlhp.algo.sac", "SAC", (gym.spaces.Box,)),
}


def check(name: str, action_space: gym.Space | None = None) -> None:
    """Raise ConfigError if the algorithm is unknown or cannot act in `action_space`."""
    if name not in ALGOS:
        raise ConfigError(f"unknown algo {name!r}; known: {', '.join(sorted(ALGOS))}")
    spaces = ALGOS[name][2]
    if action_space is not None and not isinstance(action_space, spaces):
        kinds = " or ".join(s.__name__ for s in spaces)
        raise ConfigError(
            f"algo {name} needs {kinds} actions, but the env's action space is {action_space}"
        )


POPULATION = ("ppo", "a2c")  # stacked agents: K members, rlhp.population trains them


def member_keys(name: str) -> tuple[str, ...]:
    """The hyperparameters a population holds per member for algorithm `name`."""
    return importlib.import_module(ALGOS[name][0]).MEMBER_KEYS


def _agent_class(name: str, env):
    check(name, env.action_space)
    module, cls, _ = ALGOS[name]
    return getattr(importlib.import_module(module), cls)


def make_population(cfgs: list[DictConfig], env, device: torch.device):
    """The stacked agent of `cfgs` (one per member, sharing their structure) acting in `env`."""
    cfg = cfgs[0]
    agent_cls = _agent_class(cfg.algo.name, env)
    return agent_cls([c.algo for c in cfgs], env, cfg.env.net, cfg.env.max_frame, device)


def make(cfg: DictConfig, env, device: torch.device):
    """The agent for `cfg.algo` acting in `env` (a rlhp.env.VecEnv)."""
    agent_cls = _agent_class(cfg.algo.name, env)
    return agent_cls(cfg.algo, env, cfg.env.net, cfg.env.max_frame, device)
