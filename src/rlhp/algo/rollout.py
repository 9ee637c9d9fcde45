"""The on-policy rollout of PPO and A2C: `time_horizon` steps from every env, on the device."""

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch


class Rollout:
    """obs, actions, log-probabilities and values (when the agent keeps them), rewards and dones,
    each (time_horizon, num_envs, ...); Atari frames stay uint8. A reward that ends an episode
    by a time limit (truncated, not terminated) is bootstrapped: r + gamma V(final obs)."""

    def __init__(
        self,
        time_horizon: int,
        num_envs: int,
        obs_space: gym.Space,
        act_space: gym.Space,
        net: str,
        device: torch.device,
    ):
        shape = (time_horizon, num_envs)
        obs_dtype = torch.uint8 if net == "cnn" else torch.float32
        self.obs = torch.zeros(shape + obs_space.shape, dtype=obs_dtype, device=device)
        self.actions = torch.zeros(shape + act_space.shape, device=device)
        self.logps, self.values, self.rewards, self.dones = (
            torch.zeros(shape, device=device) for _ in range(4)
        )
        self.time_horizon, self.device = time_horizon, device
        self.step = 0
        self.next_obs: torch.Tensor | None = None  # the obs after the last step, for V(s_T)

    @property
    def full(self) -> bool:
        return self.step == self.time_horizon

    def tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, device=self.device, dtype=self.obs.dtype)

    def add(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        logp: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
    ) -> None:
        """What the agent saw and did at this step."""
        self.obs[self.step], self.actions[self.step] = obs, action
        if logp is not None:
            self.logps[self.step], self.values[self.step] = logp, value

    def add_outcome(
        self,
        next_obs: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        final_obs: np.ndarray | None,
        value: Callable[[torch.Tensor], torch.Tensor],
        gamma: float,
    ) -> None:
        """The step's outcome; `value` is V(s) of the agent, for bootstrapping time limits."""
        reward = torch.as_tensor(reward, device=self.device)
        bootstrap = truncated & ~terminated
        if bootstrap.any():  # a time limit is not a terminal state
            final_value = value(self.tensor(final_obs[bootstrap]))
            reward[torch.as_tensor(bootstrap, device=self.device)] += gamma * final_value
        self.rewards[self.step] = reward
        self.dones[self.step] = torch.as_tensor(terminated | truncated, device=self.device)
        self.next_obs = self.tensor(next_obs)
        self.step += 1

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        """(time_horizon, num_envs, ...) -> (time_horizon * num_envs, ...)."""
        return x.reshape((-1,) + x.shape[2:])
