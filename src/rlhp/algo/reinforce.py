"""REINFORCE (Williams 1992): Monte-Carlo policy gradient on whole episodes, optionally with a
learned state-value baseline (Sutton & Barto 2018, section 13.4).

Reads top to bottom: the discounted returns of an episode, then the agent (policy and baseline
are rlhp.net.ActorCritic). Each env's episode is kept until it ends; once `batch_episodes`
episodes have ended the agent takes one gradient step on all their steps and starts a new batch.
An episode cut by a time limit bootstraps its return from the baseline's V(last obs) when there
is a baseline.
Episodes still running when a checkpoint is taken are not part of it: the loop resets the envs
on resume, so they could not go on anyway. Discrete and Box actions.
"""

import numpy as np
import torch
from omegaconf import DictConfig

from rlhp.algo import plain
from rlhp.algo._schedule import linear
from rlhp.net import ActorCritic, gradient_step


def discounted_returns(rewards: np.ndarray, gamma: float, last_value: float = 0.0) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1} for one episode, G_T = last_value (0 at a terminal state)."""
    returns = np.zeros(len(rewards), dtype=np.float32)
    g = last_value
    for t in reversed(range(len(rewards))):
        g = rewards[t] + gamma * g
        returns[t] = g
    return returns


class REINFORCE:
    """The REINFORCE agent: `act`, `observe` per env episode, `update` per batch of episodes."""

    def __init__(self, cfg: DictConfig, env, net: str, max_frame: int, device: torch.device):
        self.cfg, self.max_frame, self.device = plain(cfg), max_frame, device
        self.num_envs = env.num_envs
        self.model = ActorCritic(
            env.observation_space,
            env.action_space,
            net,
            cfg.hid_layers,
            cfg.hid_layers_activation,
            critic=cfg.baseline,
        ).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.obs_dtype = torch.uint8 if net == "cnn" else torch.float32
        # the running episode of each env: lists of obs, actions, rewards
        self.running = [([], [], []) for _ in range(self.num_envs)]
        self.batch: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # ended: obs, act, G
        self.obs: np.ndarray | None = None
        self.action: np.ndarray | None = None

    @property
    def at_boundary(self) -> bool:
        """True when no ended episode waits for training (running ones are dropped on resume)."""
        return not self.batch

    def _tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, device=self.device, dtype=self.obs_dtype)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        action = self.model.dist(self._tensor(obs)).sample().cpu().numpy()
        self.obs, self.action = obs, action
        return action

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """The most likely action, for evaluation (nothing is recorded)."""
        return self.model.greedy(self._tensor(obs)).cpu().numpy()

    @torch.inference_mode()
    def observe(self, next_obs, reward, terminated, truncated, final_obs) -> None:
        for env in range(self.num_envs):
            obs, actions, rewards = self.running[env]
            obs.append(self.obs[env])
            actions.append(self.action[env])
            rewards.append(float(reward[env]))
            if not (terminated[env] or truncated[env]):
                continue
            last_value = 0.0
            if truncated[env] and not terminated[env] and self.cfg.baseline:
                last_value = self.model.value(self._tensor(final_obs[env : env + 1])).item()
            returns = discounted_returns(np.array(rewards), self.cfg.gamma, last_value)
            self.batch.append((np.stack(obs), np.stack(actions), returns))
            self.running[env] = ([], [], [])

    def update(self, frame: int) -> dict[str, float] | None:
        """One gradient step once batch_episodes episodes have ended; returns the losses."""
        cfg = self.cfg
        if len(self.batch) < cfg.batch_episodes:
            return None
        lr = cfg.lr * linear(1.0, 0.0, frame, self.max_frame) if cfg.lr_anneal else cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        obs = self._tensor(np.concatenate([ep[0] for ep in self.batch]))
        actions = torch.as_tensor(np.concatenate([ep[1] for ep in self.batch]), device=self.device)
        returns = torch.as_tensor(np.concatenate([ep[2] for ep in self.batch]), device=self.device)
        self.batch = []
        dist = self.model.dist(obs)
        logp, entropy = self.model.log_prob(dist, actions), self.model.entropy(dist)
        advantages = returns
        value_loss = torch.zeros((), device=self.device)
        if cfg.baseline:
            values = self.model.value(obs)
            advantages = returns - values.detach()
            value_loss = 0.5 * ((returns - values) ** 2).mean()
        if cfg.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -(advantages * logp).mean()
        entropy = entropy.mean()
        loss = policy_loss + cfg.val_loss_coef * value_loss - cfg.entropy_coef * entropy
        if not torch.isfinite(loss):
            raise FloatingPointError(f"REINFORCE loss is {loss.item()} at frame {frame}")
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
