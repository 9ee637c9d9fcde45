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

from rlhp.algo.ppo import gae
from rlhp.algo.rollout import Rollout
from rlhp.config import plain
from rlhp.net import ActorCritic, gradient_step


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
        self.rollout = Rollout(
            cfg.time_horizon, self.num_envs, env.observation_space, env.action_space, net, device
        )

    @property
    def at_boundary(self) -> bool:
        """True between rollouts: nothing is buffered, so a checkpoint here loses nothing."""
        return self.rollout.step == 0

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = self.rollout.tensor(obs)
        action = self.model.dist(obs).sample()
        self.rollout.add(obs, action)
        return action.cpu().numpy()

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """The most likely action, for evaluation (nothing is recorded)."""
        return self.model.greedy(self.rollout.tensor(obs)).cpu().numpy()

    @torch.inference_mode()
    def observe(self, next_obs, reward, terminated, truncated, final_obs) -> None:
        self.rollout.add_outcome(
            next_obs, reward, terminated, truncated, final_obs, self.model.value, self.cfg.gamma
        )

    def update(self, frame: int) -> dict[str, float] | None:
        """One gradient step once the rollout holds time_horizon steps; returns the losses."""
        cfg, rollout = self.cfg, self.rollout
        if not rollout.full:
            return None
        rollout.step = 0
        progress = 1.0 - (frame - self.num_envs * cfg.time_horizon) / self.max_frame
        lr = cfg.lr * max(progress, 0.0) if cfg.lr_anneal else cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        obs, actions = rollout.flat(rollout.obs), rollout.flat(rollout.actions)
        values = self.model.value(obs)
        with torch.no_grad():
            last_value = self.model.value(rollout.next_obs)
            advantages, returns = gae(
                rollout.rewards,
                values.reshape(rollout.rewards.shape),
                rollout.dones,
                last_value,
                cfg.gamma,
                cfg.lam,
            )
            advantages, returns = rollout.flat(advantages), rollout.flat(returns)
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
        gradient_step(self.optimizer, loss, self.model.parameters(), cfg.clip_grad_val)
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
