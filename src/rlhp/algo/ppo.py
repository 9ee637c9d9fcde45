"""Proximal Policy Optimization (Schulman et al. 2017) with GAE (Schulman et al. 2016).

Reads top to bottom: the two pure functions of the method (`gae` and `ppo_loss`), then the
agent, which collects a rollout of `time_horizon` steps from every env and trains on it for
`training_epoch` passes of shuffled minibatches. The net is rlhp.net.ActorCritic.
"""

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from rlhp.config import plain
from rlhp.net import ActorCritic


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns for a (T, num_envs) rollout.

    dones[t] is 1 where the episode ended after step t; last_value is V(obs after step T-1).
    """
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(last_value)
    for t in reversed(range(rewards.shape[0])):
        next_value = last_value if t == rewards.shape[0] - 1 else values[t + 1]
        not_done = 1.0 - dones[t]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        last_gae = delta + gamma * lam * not_done * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


def ppo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    clip_eps: float,
    clip_vloss: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate policy loss and (optionally clipped) value loss, both to minimise."""
    ratio = (logp - old_logp).exp()
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    policy_loss = -surrogate.mean()
    value_loss = (value - returns) ** 2
    if clip_vloss:
        clipped = old_value + (value - old_value).clamp(-clip_eps, clip_eps)
        value_loss = torch.max(value_loss, (clipped - returns) ** 2)
    return policy_loss, 0.5 * value_loss.mean()


class PPO:
    """The PPO agent: `act` on each step, `observe` its outcome, `update` when a rollout is full."""

    def __init__(self, cfg: DictConfig, env, net: str, max_frame: int, device: torch.device):
        self.cfg, self.max_frame, self.device = cfg, max_frame, device
        self.num_envs = env.num_envs
        self.model = ActorCritic(
            env.observation_space,
            env.action_space,
            net,
            cfg.hid_layers,
            cfg.hid_layers_activation,
            shared=cfg.shared,
        ).to(device)
        self.params = list(self.model.parameters())
        # foreach: one fused op per Adam step on CPU too, not a Python loop over the tensors
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr, eps=1e-5, foreach=True)
        self.time_horizon = cfg.time_horizon
        shape = (cfg.time_horizon, self.num_envs)
        obs_dtype = torch.uint8 if net == "cnn" else torch.float32
        self.obs = torch.zeros(shape + env.observation_space.shape, dtype=obs_dtype, device=device)
        self.actions = torch.zeros(shape + env.action_space.shape, device=device)
        self.logps, self.rewards, self.dones, self.values = (
            torch.zeros(shape, device=device) for _ in range(4)
        )
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
        dist, value = self.model.dist_value(obs)
        action = dist.sample()
        self.obs[self.step] = obs
        self.actions[self.step] = action
        self.logps[self.step] = self.model.log_prob(dist, action)
        self.values[self.step] = value
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
        """Train on the rollout once it holds time_horizon steps; returns the losses then."""
        if self.step < self.time_horizon:
            return None
        self.step = 0
        cfg = plain(self.cfg)
        progress = 1.0 - (frame - self.num_envs * cfg.time_horizon) / self.max_frame
        lr = cfg.lr * max(progress, 0.0) if cfg.lr_anneal else cfg.lr
        clip_eps = cfg.clip_eps * max(progress, 0.0) if cfg.clip_eps_anneal else cfg.clip_eps
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            last_value = self.model.value(self.next_obs)
            advantages, returns = gae(
                self.rewards, self.values, self.dones, last_value, cfg.gamma, cfg.lam
            )
        batch = self.num_envs * cfg.time_horizon
        obs = self.obs.reshape((batch,) + self.obs.shape[2:])
        actions = self.actions.reshape((batch,) + self.actions.shape[2:])
        logps, values = self.logps.reshape(batch), self.values.reshape(batch)
        advantages, returns = advantages.reshape(batch), returns.reshape(batch)
        stats = []
        for _ in range(cfg.training_epoch):
            for idx in torch.randperm(batch, device=self.device).split(cfg.minibatch_size):
                dist, value = self.model.dist_value(obs[idx])
                logp = self.model.log_prob(dist, actions[idx])
                adv = advantages[idx]
                if cfg.normalize_advantage and len(idx) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                policy_loss, value_loss = ppo_loss(
                    logp,
                    logps[idx],
                    adv,
                    value,
                    values[idx],
                    returns[idx],
                    clip_eps,
                    cfg.clip_vloss,
                )
                entropy = self.model.entropy(dist).mean()
                loss = policy_loss + cfg.val_loss_coef * value_loss - cfg.entropy_coef * entropy
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"PPO loss is {loss.item()} at frame {frame}")
                self.optimizer.zero_grad()
                loss.backward()
                if cfg.clip_grad_val is not None:
                    nn.utils.clip_grad_norm_(self.params, cfg.clip_grad_val)
                self.optimizer.step()
                stats.append(torch.stack([policy_loss, value_loss, entropy]).detach())
        policy_loss, value_loss, entropy = torch.stack(stats).mean(0).tolist()
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "lr": lr,
        }

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
