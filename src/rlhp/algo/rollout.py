"""What PPO and A2C share: the on-policy rollout (`time_horizon` steps from every env copy of
every member, on the device), generalized advantage estimation (Schulman et al. 2016) over it,
and the agent skeleton of a population of members (`OnPolicy`)."""

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

from rlhp import optim
from rlhp.algo import plain
from rlhp.algo._schedule import linear
from rlhp.stack import Active, MemberParams, StackedActorCritic, per_member, pick, spread


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float | torch.Tensor,
    lam: float | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates and returns for a (T, ...) rollout; gamma and lam are
    floats or tensors that broadcast against one step (e.g. [K, 1] for [K, num_envs] steps).

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


class Rollout:
    """obs, actions, log-probabilities and values (when the agent keeps them), rewards and dones,
    each (time_horizon, members * num_envs, ...); Atari frames stay uint8. A reward that ends an
    episode by a time limit (truncated, not terminated) is bootstrapped: r + gamma V(final obs)."""

    def __init__(
        self,
        time_horizon: int,
        num_envs: int,
        obs_space: gym.Space,
        act_space: gym.Space,
        net: str,
        device: torch.device,
        members: int = 1,
    ):
        shape = (time_horizon, members * num_envs)
        obs_dtype = torch.uint8 if net == "cnn" else torch.float32
        self.obs = torch.zeros(shape + obs_space.shape, dtype=obs_dtype, device=device)
        self.actions = torch.zeros(shape + act_space.shape, device=device)
        self.logps, self.values, self.rewards, self.dones = (
            torch.zeros(shape, device=device) for _ in range(4)
        )
        self.time_horizon, self.members, self.device = time_horizon, members, device
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
        gamma: torch.Tensor,
    ) -> None:
        """The step's outcome; `value` is V(s) of the agent for every copy's obs, for
        bootstrapping time limits; gamma is per copy."""
        reward = torch.as_tensor(reward, device=self.device)
        bootstrap = truncated & ~terminated
        if bootstrap.any():  # a time limit is not a terminal state
            mask = torch.as_tensor(bootstrap, device=self.device)
            reward[mask] += gamma[mask] * value(self.tensor(final_obs))[mask]
        self.rewards[self.step] = reward
        self.dones[self.step] = torch.as_tensor(terminated | truncated, device=self.device)
        self.next_obs = self.tensor(next_obs)
        self.step += 1

    def by_member(self, x: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        """(time_horizon, members * num_envs, ...) -> (members, time_horizon * num_envs, ...),
        each member's samples in step-major order; of the members `ks` only, if given."""
        t, copies = x.shape[:2]
        x = x.reshape((t, self.members, copies // self.members) + x.shape[2:]).transpose(0, 1)
        return pick(x, ks).flatten(1, 2)


class OnPolicy:
    """What PPO and A2C share: a population of K members (K = 1: a single run) with a stacked
    actor-critic, per-member hyperparameters (`member_keys`, [K] tensors) and one rollout.

    Arrays in and out are [K * num_envs, ...], member k owning rows k * num_envs ... Only the
    members in `active` run (rlhp.stack.Active: their indices `ks`): an idle member is not
    forwarded, sampled or back-propagated, its weights, optimiser state and generator stay as
    they are, and its rows of the actions and the rollout are zeros.
    """

    member_keys: tuple[str, ...] = ()

    def __init__(self, cfgs: list, env, net: str, max_frame: int, device, optimizer: str):
        cfg = plain(cfgs[0])  # the structure all members share
        self.cfg, self.max_frame, self.device = cfg, max_frame, device
        self.members, self.num_envs = len(cfgs), env.num_envs
        self.model = StackedActorCritic(
            self.members,
            env.observation_space,
            env.action_space,
            net,
            cfg.hid_layers,
            cfg.hid_layers_activation,
            shared=cfg.shared,
        ).to(device)
        self.optimizer = optim.make(optimizer, self.model.flat, self.model.grad)
        self.hp = MemberParams(self.member_keys, cfgs, device)
        self.gammas = self.hp.gamma.repeat_interleave(self.num_envs)
        self.active = Active(self.members, device)
        self.rollout = Rollout(
            cfg.time_horizon,
            self.num_envs,
            env.observation_space,
            env.action_space,
            net,
            device,
            self.members,
        )

    def set_member(self, k: int, cfg, seed: int) -> None:
        """Slot k gets a new member: its hyperparameters, fresh weights from its seed, a fresh
        optimiser state. Called between rollouts."""
        self.hp.set(k, cfg)
        self.gammas = self.hp.gamma.repeat_interleave(self.num_envs)
        self.model.init_member(k, seed)
        self.optimizer.reset_member(k)
        self.active[k] = True

    @property
    def at_boundary(self) -> bool:
        """True between rollouts: nothing is buffered, so a checkpoint here loses nothing."""
        return self.rollout.step == 0

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray, k: int = 0) -> np.ndarray:
        """Member k's most likely actions for its observations, for evaluation."""
        ks = torch.tensor([k], device=self.device)
        return self.model.greedy(self.rollout.tensor(obs)[None], ks)[0].cpu().numpy()

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(obs) for [K * num_envs, ...] observations (0 for the idle members)."""
        ks = self.active.ks()
        value = self.model.value(per_member(obs, self.members, ks), ks)
        return spread(value, ks, self.members).flatten()

    @torch.no_grad()
    def gae(self, values: torch.Tensor, ks: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """GAE advantages and returns of the members ks ([A, time_horizon * num_envs] each,
        step-major) from their values V(s_t) in the same layout."""
        rollout, hp, t, n = self.rollout, self.hp, self.cfg.time_horizon, self.num_envs

        def steps(x: torch.Tensor) -> torch.Tensor:  # (T, K * n) -> (T, A, n)
            return pick(x.view(t, self.members, n).transpose(0, 1), ks).transpose(0, 1)

        advantages, returns = gae(
            steps(rollout.rewards),
            values.reshape(-1, t, n).transpose(0, 1),
            steps(rollout.dones),
            self.model.value(per_member(rollout.next_obs, self.members, ks), ks),
            pick(hp.gamma, ks).unsqueeze(1),
            pick(hp.lam, ks).unsqueeze(1),
        )
        return advantages.transpose(0, 1).flatten(1), returns.transpose(0, 1).flatten(1)

    @torch.inference_mode()
    def observe(self, next_obs, reward, terminated, truncated, final_obs) -> None:
        self.rollout.add_outcome(
            next_obs, reward, terminated, truncated, final_obs, self.value, self.gammas
        )

    def annealed(self, key: str, frames: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """Each member's `key` (lr, clip_eps), linearly annealed to 0 over max_frame where
        `<key>_anneal` is on, as of the frames before the rollout just collected: float64
        values and a tensor."""
        rollout_frames = self.num_envs * self.cfg.time_horizon
        decay = linear(1.0, 0.0, frames - rollout_frames, self.max_frame)
        values = self.hp.annealed(key, decay)
        return values, torch.as_tensor(values, dtype=torch.float32).to(self.device)

    def step(self, loss: torch.Tensor, lr: torch.Tensor, ks: torch.Tensor | None) -> torch.Tensor:
        """One optimiser step of the members ks on their losses [A]: a member whose loss is
        not finite is marked failed and left out of this and every later step; the idle
        members' weights and optimiser state stay as they are. Returns the non-finite loss of
        each member that failed now, 0 for the others ([K]; the update mirrors it: `fail`)."""
        loss, active = spread(loss, ks, self.members), self.active.tensor
        failed = ~torch.isfinite(loss.detach()) & active
        active &= ~failed
        self.model.grad.zero_()
        # where and masked_fill, not a mask product: NaN * 0 would still be NaN
        torch.where(active, loss, 0.0).sum().backward()
        if not bool(pick(active, ks).all()):  # one failed in this update: NaN gradient
            self.model.grad.masked_fill_(~active.unsqueeze(1), 0.0)
        optim.clip_grad_norm(self.model.grad, self.hp.clip_grad_val)
        self.optimizer.step(lr, None if bool(active.all()) else active)
        return torch.where(failed, loss.detach(), 0.0)

    def member_state(self, k: int) -> dict:
        return {"model": self.model.member_state(k), "optimizer": self.optimizer.member_state(k)}

    def load_member_state(self, k: int, state: dict) -> None:
        self.model.load_member_state(k, state["model"])
        self.optimizer.load_member_state(k, state["optimizer"])
