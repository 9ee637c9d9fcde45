"""Advantage Actor-Critic (A2C, the synchronous variant of A3C, Mnih et al. 2016) with
generalized advantage estimation (Schulman et al. 2016), for a population of K members trained
as one batched computation (K = 1: a single run).

The agent collects `time_horizon` steps from every env copy of every member and takes one
gradient step per member on its whole rollout, with RMSprop as in the paper and SB3 (or Adam).
The hyperparameters in `MEMBER_KEYS` are [K] tensors; lam = 1 gives the paper's n-step returns.
Discrete (categorical) and Box (Gaussian with a state-independent log std) actions.
"""

import numpy as np
import torch
from omegaconf import DictConfig

from rlhp import config
from rlhp.algo import plain
from rlhp.algo.rollout import OnPolicy
from rlhp.stack import per_member, pick, spread

MEMBER_KEYS = config.MEMBER_KEYS["a2c"]


class A2C(OnPolicy):
    """The A2C agent: `act` on each step, `observe` its outcome, `update` when a rollout is full."""

    member_keys = MEMBER_KEYS

    def __init__(self, cfgs: list[DictConfig], env, net: str, max_frame: int, device):
        super().__init__(cfgs, env, net, max_frame, device, optimizer=plain(cfgs[0]).optimizer)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        obs, ks = self.rollout.tensor(obs), self.active.ks()
        action = self.model.sample(self.model.logits(per_member(obs, self.members, ks), ks), ks)
        action = spread(action, ks, self.members).flatten(0, 1)
        self.rollout.add(obs, action)
        return action.cpu().numpy()

    def update(self, frames: np.ndarray) -> dict[str, np.ndarray] | None:
        """One gradient step per member once the rollout holds time_horizon steps; returns each
        member's losses ([K] arrays) and `failed`: the loss of a member whose loss went non-finite
        (nan or inf), 0 for the others."""
        hp, rollout = self.hp, self.rollout
        if not rollout.full:
            return None
        rollout.step = 0
        ks = self.active.ks()  # the members that train; the idle ones cost nothing
        lrs, lr = self.annealed("lr", frames)
        obs, actions = rollout.by_member(rollout.obs, ks), rollout.by_member(rollout.actions, ks)
        logits, values = self.model.logits_value(obs, ks)
        advantages, returns = self.gae(values, ks)
        if self.cfg.normalize_advantage:
            mean, std = advantages.mean(1, keepdim=True), advantages.std(1, keepdim=True)
            advantages = (advantages - mean) / (std + 1e-8)
        dist = self.model.distribution(logits, ks)
        logp, entropy = self.model.log_prob(dist, actions), self.model.entropy(dist).mean(1)
        policy_loss = -(advantages * logp).mean(1)
        value_loss = 0.5 * ((returns - values) ** 2).mean(1)
        loss = policy_loss + pick(hp.val_loss_coef, ks) * value_loss
        loss = loss - pick(hp.entropy_coef, ks) * entropy
        failed = self.step(loss, lr, ks).cpu().numpy()
        self.active.fail(failed)
        losses = torch.stack([policy_loss, value_loss, entropy]).detach().T
        losses = spread(losses, ks, self.members, float("nan")).T.cpu().numpy()
        return {
            "policy_loss": losses[0],
            "value_loss": losses[1],
            "entropy": losses[2],
            "lr": lrs,
            "failed": failed,
        }
