"""Proximal Policy Optimization (Schulman et al. 2017) with GAE (Schulman et al. 2016).

Reads top to bottom: the two pure functions of the method (`gae` and `ppo_loss`), then the
agent, which collects a rollout of `time_horizon` steps from every env and trains on it for
`training_epoch` passes of shuffled minibatches. The net is rlhp.net.ActorCritic.
"""

import numpy as np
import torch
from omegaconf import DictConfig

from rlhp.algo.rollout import Rollout
from rlhp.config import plain
from rlhp.net import ActorCritic, gradient_step


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
        dist, value = self.model.dist_value(obs)
        action = dist.sample()
        self.rollout.add(obs, action, self.model.log_prob(dist, action), value)
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
        """Train on the rollout once it holds time_horizon steps; returns the losses then."""
        rollout = self.rollout
        if not rollout.full:
            return None
        rollout.step = 0
        cfg = plain(self.cfg)
        progress = 1.0 - (frame - self.num_envs * cfg.time_horizon) / self.max_frame
        lr = cfg.lr * max(progress, 0.0) if cfg.lr_anneal else cfg.lr
        clip_eps = cfg.clip_eps * max(progress, 0.0) if cfg.clip_eps_anneal else cfg.clip_eps
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.no_grad():
            last_value = self.model.value(rollout.next_obs)
            advantages, returns = gae(
                rollout.rewards, rollout.values, rollout.dones, last_value, cfg.gamma, cfg.lam
            )
        batch = self.num_envs * cfg.time_horizon
        obs, actions = rollout.flat(rollout.obs), rollout.flat(rollout.actions)
        logps, values = rollout.flat(rollout.logps), rollout.flat(rollout.values)
        advantages, returns = rollout.flat(advantages), rollout.flat(returns)
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
                gradient_step(self.optimizer, loss, self.params, cfg.clip_grad_val)
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
