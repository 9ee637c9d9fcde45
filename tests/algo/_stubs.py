"""What the agent tests build agents from: an algorithm's config file and a stand-in for the
vector env (the attributes an agent reads of rlhp.env.VecEnv)."""

from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf" / "algo"


def algo_config(name: str, *overrides: dict) -> DictConfig:
    """conf/algo/<name>.yaml with `overrides` merged in."""
    return OmegaConf.merge(OmegaConf.load(CONF / f"{name}.yaml"), *overrides)


def vec_env(num_envs: int, action_space: gym.Space, obs_dim: int = 2) -> SimpleNamespace:
    return SimpleNamespace(
        num_envs=num_envs,
        observation_space=gym.spaces.Box(-1, 1, (obs_dim,)),
        action_space=action_space,
    )
