"""Proximal Policy Optimization (Schulman et al. 2017) with GAE (Schulman et al. 2016), for a
population of K members trained as one batched computation (K = 1: a single run).

Reads top to bottom: the loss of the method (`ppo_loss`), then the agent, which collects a
rollout of `time_horizon` steps from every env copy of every member and trains on it for
`training_epoch` passes of shuffled minibatches. Members share the structure (net, time_horizon,
minibatch_size, training_epoch, ...) and nothing else: the hyperparameters in `MEMBER_KEYS` are
[K] tensors, and every loss, normalisation and random draw is per member. The net is
rlhp.stack.StackedActorCritic, the optimiser rlhp.optim.StackedAdam.
"""

from types import SimpleNamespace

import numpy as np
import torch
from omegaconf import DictConfig

from rlhp import config
from rlhp.algo.rollout import OnPolicy
from rlhp.stack import per_member, pick, spread

MEMBER_KEYS = config.MEMBER_KEYS["ppo"]


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
        obs, ks = self.rollout.tensor(obs), self.active.ks()
        logits, value = self.model.logits_value(per_member(obs, self.members, ks), ks)
        action = self.model.sample(logits, ks)
        logp = self.model.log_prob(self.model.distribution(logits, ks), action)
        k = self.members
        action, logp, value = (spread(x, ks, k).flatten(0, 1) for x in (action, logp, value))
        self.rollout.add(obs, action, logp, value)
        return action.cpu().numpy()

    def update(self, frames: np.ndarray) -> dict[str, np.ndarray] | None:
        """Train on the rollout once it holds time_horizon steps; returns each member's losses
        then ([K] arrays) and `failed`: the loss of a member whose loss went non-finite (nan or
        inf), 0 for the others."""
        if not self.rollout.full:
            return None
        self.rollout.step = 0
        ks = self.active.ks()  # the members that train; the idle ones cost nothing
        lrs, lr = self.annealed("lr", frames)
        clip_eps = pick(self.annealed("clip_eps", frames)[1], ks).unsqueeze(1)
        data = self.samples(ks)
        # the structure, read once for the update's loops
        epochs, size = self.cfg.training_epoch, self.cfg.minibatch_size
        normalize, clip_vloss = self.cfg.normalize_advantage, self.cfg.clip_vloss
        failed = torch.zeros(self.members, device=self.device)
        stats = []
        for _ in range(epochs):
            perm = torch.stack(
                [torch.randperm(data.obs.shape[1], generator=g, device=self.device)
                 for g in self.model.member_generators(ks)]
            )  # fmt: skip
            for idx in perm.split(size, dim=1):
                loss, losses = self.minibatch_loss(data, idx, clip_eps, normalize, clip_vloss)
                now = self.step(loss, lr, ks)
                failed = torch.where(now != 0, now, failed)
                stats.append(losses)
        stats = spread(torch.stack(stats).mean(0).T, ks, self.members, float("nan"))
        policy_loss, value_loss, entropy = stats.T.cpu().numpy()
        failed = failed.cpu().numpy()
        self.active.fail(failed)
        return {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "lr": lrs,
            "failed": failed,
        }

    def samples(self, ks: torch.Tensor | None) -> SimpleNamespace:
        """The rollout as the samples of the members ks ([A, time_horizon * num_envs, ...]:
        obs, actions, logps, values) with their GAE advantages and returns, `ks`, and `rows`
        to index them with [A, B] sample indices."""
        by_member = self.rollout.by_member
        values = by_member(self.rollout.values, ks)
        advantages, returns = self.gae(values, ks)
        return SimpleNamespace(
            ks=ks,
            rows=torch.arange(len(values), device=self.device).unsqueeze(1),  # member: row
            obs=by_member(self.rollout.obs, ks),
            actions=by_member(self.rollout.actions, ks),
            logps=by_member(self.rollout.logps, ks),
            values=values,
            advantages=advantages,
            returns=returns,
        )

    def minibatch_loss(
        self,
        data: SimpleNamespace,
        idx: torch.Tensor,
        clip_eps: torch.Tensor,
        normalize: bool,
        clip_vloss: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of each member in `data` on its minibatch `idx` ([A, B] sample indices)
        and the policy loss, value loss and entropy beside it ([3, A], detached)."""
        rows, ks, hp = data.rows, data.ks, self.hp
        logits, value = self.model.logits_value(data.obs[rows, idx], ks)
        dist = self.model.distribution(logits, ks)
        logp = self.model.log_prob(dist, data.actions[rows, idx])
        adv = data.advantages[rows, idx]
        if normalize and idx.shape[1] > 1:
            adv = (adv - adv.mean(1, keepdim=True)) / (adv.std(1, keepdim=True) + 1e-8)
        policy_loss, value_loss = ppo_loss(
            logp,
            data.logps[rows, idx],
            adv,
            value,
            data.values[rows, idx],
            data.returns[rows, idx],
            clip_eps,
            clip_vloss,
        )
        entropy = self.model.entropy(dist).mean(1)
        loss = policy_loss + pick(hp.val_loss_coef, ks) * value_loss
        loss = loss - pick(hp.entropy_coef, ks) * entropy
        return loss, torch.stack([policy_loss, value_loss, entropy]).detach()
