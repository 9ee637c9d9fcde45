"""Advantage Actor-Critic (A2C, the synchronous variant of A3C, Mnih et al. 2016) with
generalized advantage estimation (Schulman et al. 2016).

The advantage estimator is PPO's `gae` (lam = 1 gives the plain n-step returns of the paper) and
the net rlhp.net.ActorCritic; the agent below collects `time_horizon` steps from every env and
takes one gradient step on the whole rollout, with RMSprop as in the paper and SB3.
Discrete (categorical) and Box (Gaussian with a state-independent log std) actions.
"""

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from rlhp.algo.ppo import gae
from rlhp.config import plain
from rlhp.net import ActorCritic


class A2C:
    """The A2C agent: `act` on each step, `observe` its outcome, `update` when a rollout is full."""

    def __init__(self, cfg: DictConfig, env, net: str, max_frame: int, device: torch.device):
        self.cfg, self.max_frame, self.device = plain(cfg), max_frame, device
        self.num_envs = env.num_envs
        self.model = ActorCritic(
            env.observation_space,
            env.action_space,
            net,
            cfg.hid_layers,
            cfg.hid_layers_activation,
            shared=cfg.shared,
        ).to(device)
        if cfg.optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(
                self.model.parameters(), lr=cfg.lr, alpha=0.99, eps=1e-5
            )
        elif cfg.optimizer == "adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, eps=1e-5)
        else:
            raise ValueError(f"algo.optimizer must be rmsprop or adam, got {cfg.optimizer!r}")
        shape = (cfg.time_horizon, self.num_envs)
        obs_dtype = torch.uint8 if net == "cnn" else torch.float32
        self.obs = torch.zeros(shape + env.observation_space.shape, dtype=obs_dtype, device=device)
        self.actions = torch.zeros(shape + env.action_space.shape, device=device)
        self.rewards, self.dones = (torch.zeros(shape, device=device) for _ in range(2))
        self.step = 0
        self.next_obs: torch.Tensor | None = None

    @property
    def at_boundary(self) -> bool:
        """True between rollouts: nothing is buffered, so a checkpoint here loses nothing."""
        return self.step == 0

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, device=self.device, dtype=self.obs.dtype)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = self._tensor(obs)
        action = self.model.dist(obs).sample()
        self.obs[self.step] = obs
        self.actions[self.step] = action
        return action.cpu().numpy()

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """The most likely action, for evaluation (nothing is recorded)."""
        return self.model.greedy(self._tensor(obs)).cpu().numpy()

    @torch.inference_mode()
    def observe(self, next_obs, reward, terminated, truncated, final_obs) -> None:
        reward = torch.as_tensor(reward, device=self.device)
        bootstrap = truncated & ~terminated
        if bootstrap.any():  # a time limit is not a terminal state: bootstrap from V(final_obs)
            final_value = self.model.value(self._tensor(final_obs[bootstrap]))
            reward[torch.as_tensor(bootstrap, device=self.device)] += self.cfg.gamma * final_value
        self.rewards[self.step] = reward
        self.dones[self.step] = torch.as_tensor(terminated | truncated, device=self.device)
        self.next_obs = self._tensor(next_obs)
        self.step += 1

    def update(self, frame: int) -> dict[str, float] | None:
        """One gradient step once the rollout holds time_horizon steps; returns the losses."""
        cfg = self.cfg
        if self.step < cfg.time_horizon:
            return None
        self.step = 0
        progress = 1.0 - (frame - self.num_envs * cfg.time_horizon) / self.max_frame
        lr = cfg.lr * max(progress, 0.0) if cfg.lr_anneal else cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self.num_envs * cfg.time_horizon
        obs = self.obs.reshape((batch,) + self.obs.shape[2:])
        actions = self.actions.reshape((batch,) + self.actions.shape[2:])
        if self.model.discrete:
            actions = actions.long()
        values = self.model.value(obs)
        with torch.no_grad():
            last_value = self.model.value(self.next_obs)
            advantages, returns = gae(
                self.rewards,
                values.reshape(cfg.time_horizon, self.num_envs),
                self.dones,
                last_value,
                cfg.gamma,
                cfg.lam,
            )
            advantages, returns = advantages.reshape(batch), returns.reshape(batch)
            if cfg.normalize_advantage:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        dist = self.model.dist(obs)
        logp, entropy = self.model.log_prob(dist, actions), self.model.entropy(dist)
        policy_loss = -(advantages * logp).mean()
        value_loss = 0.5 * ((returns - values) ** 2).mean()
        entropy = entropy.mean()
        loss = policy_loss + cfg.val_loss_coef * value_loss - cfg.entropy_coef * entropy
        if not torch.isfinite(loss):
            raise FloatingPointError(f"A2C loss is {loss.item()} at frame {frame}")
        self.optimizer.zero_grad()
        loss.backward()
        if cfg.clip_grad_val is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_val)
        self.optimizer.step()
        return {
            "policy_loss": policy_loss.item(),
            "value_loss": value_loss.item(),
            "entropy": entropy.item(),
            "lr": lr,
        }

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
