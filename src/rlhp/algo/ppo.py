"""Proximal Policy Optimization (Schulman et al. 2017) with GAE (Schulman et al. 2016), for a
population of K members trained as one batched computation (K = 1: a single run).

Reads top to bottom: the loss of the method (`ppo_loss`), then the agent, which collects a
rollout of `time_horizon` steps from every env copy of every member and trains on it for
`training_epoch` passes of shuffled minibatches. Members share the structure (net, time_horizon,
minibatch_size, training_epoch, ...) and nothing else: the hyperparameters in `MEMBER_KEYS` are
[K] tensors, and every loss, normalisation and random draw is per member. The net is
rlhp.stack.StackedActorCritic, the optimiser rlhp.optim.StackedAdam.
"""

import numpy as np
import torch
from omegaconf import DictConfig

from rlhp.algo.rollout import OnPolicy, gae

MEMBER_KEYS = (
    "gamma", "lam", "clip_eps", "clip_eps_anneal", "entropy_coef", "val_loss_coef", "lr",
    "lr_anneal", "clip_grad_val",
)  # fmt: skip


def ppo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    clip_eps: float | torch.Tensor,
    clip_vloss: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate policy loss and (optionally clipped) value loss, both to minimise, as
    means over the last dimension (a member's minibatch); clip_eps broadcasts ([K, 1])."""
    ratio = (logp - old_logp).exp()
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    policy_loss = -surrogate.mean(-1)
    value_loss = (value - returns) ** 2
    if clip_vloss:
        clipped = old_value + torch.clamp(value - old_value, -clip_eps, clip_eps)
        value_loss = torch.max(value_loss, (clipped - returns) ** 2)
    return policy_loss, 0.5 * value_loss.mean(-1)


class PPO(OnPolicy):
    """The PPO agent: `act` on each step, `observe` its outcome, `update` when a rollout is full."""

    member_keys = MEMBER_KEYS

    def __init__(self, cfgs: list[DictConfig], env, net: str, max_frame: int, device):
        super().__init__(cfgs, env, net, max_frame, device, optimizer="adam")

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = self.rollout.tensor(obs)
        logits, value = self.model.logits_value(self.by_slot(obs))
        action = self.model.sample(logits)
        logp = self.model.log_prob(self.model.distribution(logits), action)
        self.rollout.add(obs, action.flatten(0, 1), logp.flatten(), value.flatten())
        return action.flatten(0, 1).cpu().numpy()

    def update(self, frames: np.ndarray) -> dict[str, np.ndarray] | None:
        """Train on the rollout once it holds time_horizon steps; returns each member's losses
        then ([K] arrays) and `failed`: the loss of a member whose loss went non-finite (nan or
        inf), 0 for the others."""
        cfg, hp, rollout, members = self.cfg, self.hp, self.rollout, self.members
        if not rollout.full:
            return None
        rollout.step = 0
        lrs, lr = self.annealed("lr", frames)
        clip_eps = self.annealed("clip_eps", frames)[1].unsqueeze(1)
        with torch.no_grad():
            shape = (cfg.time_horizon, members, self.num_envs)
            advantages, returns = gae(
                rollout.rewards.view(shape),
                rollout.values.view(shape),
                rollout.dones.view(shape),
                self.model.value(self.by_slot(rollout.next_obs)),
                hp.gamma.unsqueeze(1),
                hp.lam.unsqueeze(1),
            )
        by_member = rollout.by_member
        obs, actions = by_member(rollout.obs), by_member(rollout.actions)
        logps, values = by_member(rollout.logps), by_member(rollout.values)
        advantages = by_member(advantages.view(rollout.rewards.shape))
        returns = by_member(returns.view(rollout.rewards.shape))
        batch, rows = obs.shape[1], torch.arange(members, device=self.device).unsqueeze(1)
        failed = torch.zeros(members, device=self.device)
        stats = []
        for _ in range(cfg.training_epoch):
            perm = torch.stack(
                [torch.randperm(batch, generator=g, device=self.device)
                 for g in self.model.generators]
            )  # fmt: skip
            for idx in perm.split(cfg.minibatch_size, dim=1):
                logits, value = self.model.logits_value(obs[rows, idx])
                dist = self.model.distribution(logits)
                logp = self.model.log_prob(dist, actions[rows, idx])
                adv = advantages[rows, idx]
                if cfg.normalize_advantage and idx.shape[1] > 1:
                    adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
                policy_loss, value_loss = ppo_loss(
                    logp,
                    logps[rows, idx],
                    adv,
                    value,
                    values[rows, idx],
                    returns[rows, idx],
                    clip_eps,
                    cfg.clip_vloss,
                )
                entropy = self.model.entropy(dist).mean(1)
                loss = policy_loss + hp.val_loss_coef * value_loss - hp.entropy_coef * entropy
                now = self.step(loss, lr)
                failed = torch.where(now != 0, now, failed)
                stats.append(torch.stack([policy_loss, value_loss, entropy]).detach())
        policy_loss, value_loss, entropy = torch.stack(stats).mean(0).cpu().numpy()
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "lr": lrs,
            "failed": failed.cpu().numpy(),
        }
