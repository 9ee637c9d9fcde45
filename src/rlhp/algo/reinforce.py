"""REINFORCE (Williams 1992): Monte-Carlo policy gradient on whole episodes, optionally with a
learned state-value baseline (Sutton & Barto 2018, section 13.4), for a population of K members
trained as one batched computation (K = 1: a single run).

Reads top to bottom: the discounted returns of an episode, the loss, the running episodes of
every env copy, then the agent. Each copy's episode is kept until it ends; once member k holds
`batch_episodes` ended episodes it takes one gradient step on all their steps and starts a new
batch. Members fill their batches at different steps, so a step trains only the members whose
batch is complete (the others' weights and optimiser moments stay as they are). An episode cut by
a time limit bootstraps its return from the baseline's V(last obs) when there is a baseline.
The hyperparameters in `MEMBER_KEYS` are per member; `baseline`, `normalize_advantage`,
`hid_layers` and `hid_layers_activation` are structural. Discrete and Box actions.

A member's ended episodes that wait for training are part of its state (`member_state`), so a
checkpoint loses nothing at any step; episodes still running are not: the loop resets the envs
on resume, so they could not go on anyway.
"""

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig
from torch.nn.utils.rnn import pad_sequence

from rlhp import config, optim
from rlhp.algo import plain
from rlhp.algo._schedule import linear
from rlhp.stack import Active, MemberParams, StackedActorCritic, per_member, spread

MEMBER_KEYS = config.MEMBER_KEYS["reinforce"]


def discounted_returns(rewards: np.ndarray, gamma: float, last_value: float = 0.0) -> np.ndarray:
    """G_t = r_t + gamma G_{t+1} for one episode, G_T = last_value (0 at a terminal state)."""
    returns = np.zeros(len(rewards), dtype=np.float32)
    g = last_value
    for t in reversed(range(len(rewards))):
        g = rewards[t] + gamma * g
        returns[t] = g
    return returns


def reinforce_loss(
    logp: torch.Tensor,
    entropy: torch.Tensor,
    values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    baseline: bool,
    normalize: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Policy loss, value loss (0 without a baseline) and entropy of each member, means over
    its samples: the inputs are [K, B], `mask` marks each member's samples (the rest is padding)."""
    n = mask.float().sum(1).clamp(min=1)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, x, 0.0).sum(1) / n

    advantages = returns - values.detach() if baseline else returns
    if normalize:  # over each member's batch, where it holds more than one sample
        centred = advantages - mean(advantages).unsqueeze(1)
        std = (torch.where(mask, centred, 0.0).square().sum(1) / (n - 1).clamp(min=1)).sqrt()
        advantages = torch.where(
            (n > 1).unsqueeze(1), centred / (std + 1e-8).unsqueeze(1), advantages
        )
    value_loss = 0.5 * mean((returns - values) ** 2) if baseline else torch.zeros_like(n)
    return -mean(advantages * logp), value_loss, mean(entropy)


class RunningSteps:
    """The steps of every copy's running episode, time-major: obs and actions ([T, copies, ...]
    tensors on the device) and rewards ([T, copies], float64); copy i's episode began at row
    start[i]. When the rows are full, those before every running episode are dropped (when that
    frees half of them) or the capacity doubles."""

    def __init__(
        self,
        copies: int,
        obs_space: gym.Space,
        act_space: gym.Space,
        obs_dtype: torch.dtype,
        device: torch.device,
        capacity: int = 64,
    ):
        shape = (capacity, copies)
        self.obs = torch.zeros(shape + obs_space.shape, dtype=obs_dtype, device=device)
        self.actions = torch.zeros(shape + act_space.shape, device=device)
        self.rewards = np.zeros(shape)
        self.start = np.zeros(copies, np.int64)
        self.t = 0

    def add(self, obs: torch.Tensor, actions: torch.Tensor, reward: np.ndarray) -> None:
        if self.t == len(self.rewards):
            self._make_room()
        self.obs[self.t], self.actions[self.t], self.rewards[self.t] = obs, actions, reward
        self.t += 1

    def episode(self, i: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Copy i's episode so far: its obs, actions and rewards."""
        steps = slice(self.start[i], self.t)
        return self.obs[steps, i].clone(), self.actions[steps, i].clone(), self.rewards[steps, i]

    def restart(self, copies: np.ndarray | slice) -> None:
        """The copies (indices, a mask or a slice) begin new episodes at the next step."""
        self.start[copies] = self.t

    def _make_room(self) -> None:
        drop = self.start.min()
        if drop < len(self.rewards) // 2:
            self.obs = torch.cat([self.obs, torch.zeros_like(self.obs)])
            self.actions = torch.cat([self.actions, torch.zeros_like(self.actions)])
            self.rewards = np.concatenate([self.rewards, np.zeros_like(self.rewards)])
            return
        kept = self.t - drop
        self.obs[:kept] = self.obs[drop : self.t].clone()
        self.actions[:kept] = self.actions[drop : self.t].clone()
        self.rewards[:kept] = self.rewards[drop : self.t].copy()
        self.start -= drop
        self.t = kept


class REINFORCE:
    """The REINFORCE agent: `act` on each step, `observe` its outcome (episodes end per copy),
    `update` when a member's batch of episodes is complete.

    Arrays in and out are [K * num_envs, ...], member k owning rows k * num_envs ... Only the
    members in `active` run: an idle member is not forwarded, sampled or trained, its weights,
    optimiser state and generator stay as they are, its rows of the actions are zeros and its
    copies' episodes are not kept.
    """

    member_keys = MEMBER_KEYS
    at_boundary = True  # a checkpoint loses nothing at any step (see the module docstring)

    def __init__(self, cfgs: list[DictConfig], env, net: str, max_frame: int, device):
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
        ).to(device)
        self.optimizer = optim.StackedAdam(self.model.flat, self.model.grad)
        self.hp = MemberParams(self.member_keys, cfgs, device)
        self.active = Active(self.members, device)
        self.obs_dtype = torch.uint8 if net == "cnn" else torch.float32
        copies = self.members * self.num_envs
        self.steps = RunningSteps(
            copies, env.observation_space, env.action_space, self.obs_dtype, device
        )
        # each member's ended episodes that wait for training: (obs, actions, returns)
        self.batch: list[list[tuple[torch.Tensor, ...]]] = [[] for _ in range(self.members)]
        self.obs = self.action = torch.zeros(0)  # of the last `act`, for `observe`

    def set_member(self, k: int, cfg, seed: int) -> None:
        """Slot k gets a new member: its hyperparameters, fresh weights from its seed, a fresh
        optimiser state, no episodes (its env copies start new ones)."""
        self.hp.set(k, cfg)
        self.model.init_member(k, seed)
        self.optimizer.reset_member(k)
        self.steps.restart(slice(k * self.num_envs, (k + 1) * self.num_envs))
        self.batch[k] = []
        self.active[k] = True

    def tensor(self, obs: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(obs, device=self.device, dtype=self.obs_dtype)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        self.obs, ks = self.tensor(obs), self.active.ks()
        logits = self.model.logits(per_member(self.obs, self.members, ks), ks)
        action = self.model.sample(logits, ks)
        self.action = spread(action, ks, self.members).flatten(0, 1)
        return self.action.cpu().numpy()

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray, k: int = 0) -> np.ndarray:
        """Member k's most likely actions for its observations, for evaluation."""
        ks = torch.tensor([k], device=self.device)
        return self.model.greedy(self.tensor(obs)[None], ks)[0].cpu().numpy()

    @torch.inference_mode()
    def observe(self, next_obs, reward, terminated, truncated, final_obs) -> None:
        """Record the step; each active member's copy whose episode ended hands it, with its
        discounted returns, to the member's batch."""
        self.steps.add(self.obs, self.action, reward)
        idle = ~self.active.host.repeat(self.num_envs)
        self.steps.restart(idle)  # an idle member's copies keep no steps
        ended = np.flatnonzero((terminated | truncated) & ~idle)
        last_values = self.last_values(terminated, truncated, final_obs, ended)
        for i in ended:
            k = i // self.num_envs
            obs, actions, rewards = self.steps.episode(i)
            returns = discounted_returns(rewards, self.hp.exact["gamma"][k], last_values[i])
            self.batch[k].append((obs, actions, torch.as_tensor(returns, device=self.device)))
        self.steps.restart(ended)

    def last_values(self, terminated, truncated, final_obs, ended: np.ndarray) -> np.ndarray:
        """V(final obs) of each ended copy whose episode a time limit cut (with a baseline),
        from its member's baseline; 0 elsewhere."""
        values = np.zeros((self.members, self.num_envs))
        cut = ended[truncated[ended] & ~terminated[ended]]
        if self.cfg.baseline and len(cut):
            ks = torch.as_tensor(np.unique(cut // self.num_envs), device=self.device)
            obs = per_member(self.tensor(final_obs), self.members, ks)
            values[ks.cpu().numpy()] = self.model.value(obs, ks).cpu().numpy()
        return values.flatten()

    def update(self, frames: np.ndarray) -> dict[str, np.ndarray] | None:
        """One gradient step of each active member whose batch holds batch_episodes ended
        episodes. Returns None when no member trained, else each member's losses and lr ([K]
        arrays, NaN for the members that did not train now) and `failed`: the loss of a member
        whose loss went non-finite now (nan or inf), 0 for the others."""
        due = np.array([len(b) for b in self.batch]) >= self.hp.exact["batch_episodes"]
        if not due.any():
            return None
        ks = torch.as_tensor(np.flatnonzero(due), device=self.device)
        obs, actions, returns, mask = self.stack([self.batch[k] for k in ks.tolist()])
        for k in ks.tolist():
            self.batch[k] = []
        logits, values = self.model.logits_value(obs, ks)
        dist = self.model.distribution(logits, ks)
        policy_loss, value_loss, entropy = reinforce_loss(
            self.model.log_prob(dist, actions),
            self.model.entropy(dist),
            values,
            returns,
            mask,
            self.cfg.baseline,
            self.cfg.normalize_advantage,
        )
        hp = self.hp
        loss = policy_loss + hp.val_loss_coef[ks] * value_loss - hp.entropy_coef[ks] * entropy
        lrs = hp.annealed("lr", linear(1.0, 0.0, frames, self.max_frame))
        failed = self.step(loss, torch.as_tensor(lrs, dtype=torch.float32).to(self.device), ks)
        stats = torch.stack([policy_loss, value_loss, entropy], 1).detach()
        stats = spread(stats, ks, self.members, np.nan)
        stats = stats.cpu().numpy()
        return {
            "policy_loss": stats[:, 0],
            "value_loss": stats[:, 1],
            "entropy": stats[:, 2],
            "lr": np.where(due, lrs, np.nan),
            "failed": failed,
        }

    def stack(self, batches: list[list[tuple[torch.Tensor, ...]]]) -> tuple[torch.Tensor, ...]:
        """The members' batches of episodes as [A, B, ...] obs, actions and returns, zero-padded
        to the largest, and the [A, B] mask of each member's samples."""
        parts = [[torch.cat(x) for x in zip(*episodes, strict=True)] for episodes in batches]
        obs, actions, returns = (
            pad_sequence(x, batch_first=True) for x in zip(*parts, strict=True)
        )
        lengths = torch.tensor([len(p[2]) for p in parts], device=self.device)
        mask = torch.arange(returns.shape[1], device=self.device) < lengths.unsqueeze(1)
        return obs, actions, returns, mask

    def step(self, loss: torch.Tensor, lr: torch.Tensor, ks: torch.Tensor) -> np.ndarray:
        """One optimiser step of the members ks on their losses [A]; the others' weights and
        moments stay as they are. A member whose loss is not finite is marked failed and left
        out of this and every later step. Returns the non-finite loss of each member that failed
        now, 0 for the others ([K])."""
        failed = ~torch.isfinite(loss.detach())
        self.active.tensor[ks[failed]] = False
        self.model.grad.zero_()
        # where, not a mask product: NaN * 0 would still be NaN
        torch.where(failed, 0.0, loss).sum().backward()
        optim.clip_grad_norm(self.model.grad, self.hp.clip_grad_val)
        train = torch.zeros(self.members, dtype=torch.bool, device=self.device)
        train[ks[~failed]] = True
        self.optimizer.step(lr, train)
        failed = spread(torch.where(failed, loss.detach(), 0.0), ks, self.members).cpu().numpy()
        self.active.fail(failed)
        return failed

    def member_state(self, k: int) -> dict:
        """Member k's weights, generator, optimiser state and the ended episodes of its batch."""
        return {
            "model": self.model.member_state(k),
            "optimizer": self.optimizer.member_state(k),
            "batch": [tuple(x.cpu() for x in episode) for episode in self.batch[k]],
        }

    def load_member_state(self, k: int, state: dict) -> None:
        self.model.load_member_state(k, state["model"])
        self.optimizer.load_member_state(k, state["optimizer"])
        self.batch[k] = [tuple(x.to(self.device) for x in episode) for episode in state["batch"]]
