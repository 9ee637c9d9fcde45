"""Deep Q-Network (Mnih et al. 2015), with double Q-learning (van Hasselt et al. 2016) and
prioritised experience replay (Schaul et al. 2016) as options, for a population of K members
trained as one batched computation (K = 1: a single run).

Reads top to bottom: the TD target, the frame schedules, then the agent. Every step goes into
each member's own replay memory; once a member has seen `learning_starts` frames, every
`training_frequency` of its frames it takes `training_iter` gradient steps on minibatches of
`batch_size`, and every `target_update_frequency` of its frames its target network moves towards
its online one (tau = 1: a copy). Epsilon, lr (with `lr_anneal`) and PER's beta are annealed
linearly over the member's own frames. All counts are frames (env steps summed over a member's
vector envs), so they mean the same whatever `env.num_envs` is.

Members share the structure (net, `batch_size`, `memory_size`, `prioritized`) and nothing else:
the hyperparameters in `MEMBER_KEYS` are [K] values, each member explores and samples its replay
with its own generators, and a gradient step runs and moves only the members that are due (the
others' weights and Adam moments stay as they are), so member k trains as it would alone. An idle
member (`active` False: a stopped member, a free index) is not forwarded, sampled or trained.
The nets are rlhp.stack.StackedQNetwork, the optimiser rlhp.optim.StackedAdam. Discrete actions
only; Atari frames stay uint8 in replay.
"""

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from rlhp import config
from rlhp.algo import plain
from rlhp.algo._schedule import crossed, linear
from rlhp.algo.replay import ReplayMemory
from rlhp.config import flatten
from rlhp.optim import StackedAdam, clip_grad_norm
from rlhp.stack import Active, MemberParams, StackedQNetwork, pick

MEMBER_KEYS = config.MEMBER_KEYS["dqn"]


def td_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None,
    gamma: float | torch.Tensor,
    double: bool | torch.Tensor = False,
) -> torch.Tensor:
    """y = r + gamma (1 - terminated) Q_target(s', a'), [..., B] from [..., B, n_actions] values;
    gamma and double broadcast ([K, 1] for K members).

    DQN: a' = argmax_a Q_target(s', a). Double DQN (where `double`): a' = argmax_a Q_online(s', a),
    the online net chooses and the target net evaluates.
    """
    best = next_q_target.argmax(-1)
    if next_q_online is not None:
        best = torch.where(torch.as_tensor(double), next_q_online.argmax(-1), best)
    next_value = next_q_target.gather(-1, best.unsqueeze(-1)).squeeze(-1)
    return reward + gamma * (1.0 - terminated) * next_value


def steps_due(last: np.ndarray, frames: np.ndarray, hp: dict[str, np.ndarray]) -> np.ndarray:
    """Gradient steps each member owes as its frame count moves from `last` to `frames`:
    `training_iter` per multiple of `training_frequency` crossed, none before `learning_starts`."""
    crossings = crossed(last, frames, hp["training_frequency"]) * hp["training_iter"]
    return np.where(frames >= hp["learning_starts"], crossings, 0).astype(np.int64)


def targets_due(last: np.ndarray, frames: np.ndarray, hp: dict[str, np.ndarray]) -> np.ndarray:
    """Which members' target nets move now: a multiple of `target_update_frequency` crossed,
    from `learning_starts` on."""
    crossings = crossed(last, frames, hp["target_update_frequency"])
    return (frames >= hp["learning_starts"]) & (crossings > 0)


def epsilon(hp: dict[str, np.ndarray], frames: np.ndarray) -> np.ndarray:
    """Each member's epsilon: linear from start to end over end_step of its frames."""
    start, end = hp["explore_var_spec.start"], hp["explore_var_spec.end"]
    return linear(start, end, frames, hp["explore_var_spec.end_step"])


def replay_seed(seed: int) -> int:
    """The seed of a member's replay sampling: a stream apart from its exploration's."""
    return int(np.random.SeedSequence(seed, spawn_key=(1,)).generate_state(1)[0])


def member_values(cfg: DictConfig) -> dict:
    """A member's algo config as flat `key: value` (`explore_var_spec.start`, ...)."""
    return flatten(OmegaConf.to_container(cfg, resolve=True))


class DQN:
    """The DQN agent: epsilon-greedy `act`, `observe` into replay, `update` on each member's
    frame schedule. Arrays in and out are [K * num_envs, ...], member k owning rows
    k * num_envs ... (k + 1) * num_envs - 1."""

    member_keys = MEMBER_KEYS
    at_boundary = True  # nothing is buffered outside the member states: checkpoint at any step

    def __init__(self, cfgs: list[DictConfig], env, net: str, max_frame: int, device):
        cfg = plain(cfgs[0])  # the structure all members share
        self.cfg, self.max_frame, self.device = cfg, max_frame, device
        self.members, self.num_envs = len(cfgs), env.num_envs
        self.n_actions = int(env.action_space.n)
        obs_shape = env.observation_space.shape
        shape = (self.members, obs_shape, self.n_actions, net, cfg.hid_layers)
        self.q_net = StackedQNetwork(*shape, cfg.hid_layers_activation).to(device)
        self.target_net = StackedQNetwork(*shape, cfg.hid_layers_activation).to(device)
        self.optimizer = StackedAdam(self.q_net.flat, self.q_net.grad, eps=1e-8)  # torch's eps
        self.hp = MemberParams(MEMBER_KEYS, [member_values(c) for c in cfgs], device)
        self.obs_dtype = torch.uint8 if net == "cnn" else torch.float32
        self.memory = ReplayMemory(
            self.members,
            cfg.memory_size,
            self.num_envs,
            obs_shape,
            self.obs_dtype,
            (),
            torch.int64,
            torch.device(device),
            prioritized=cfg.prioritized,
            frame_stack=obs_shape[0] if net == "cnn" else 1,
        )
        self.active = Active(self.members, device)
        self.frames = np.zeros(self.members, np.int64)  # each member's frames at the last update
        self.obs: np.ndarray | None = None
        self.action: np.ndarray | None = None

    def set_member(self, k: int, cfg: DictConfig, seed: int) -> None:
        """Slot k gets a new member: its hyperparameters, fresh weights (the target a copy) from
        its seed, a fresh optimiser state, an empty replay memory, frame 0."""
        self.hp.set(k, member_values(cfg))
        self.q_net.init_member(k, seed)
        self.target_net.copy_member(k, self.q_net)
        self.optimizer.reset_member(k)
        self.memory.reset_member(k, replay_seed(seed), cfg.alpha_per)
        self.frames[k] = 0
        self.active[k] = True

    def tensor(self, obs: np.ndarray) -> torch.Tensor:
        """[K * n, ...] observations -> [K, n, ...] on the device."""
        x = torch.as_tensor(obs, device=self.device, dtype=self.obs_dtype)
        return x.reshape((self.members, -1) + x.shape[1:])

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Epsilon-greedy actions of the active members (idle members' rows: 0); member k draws
        from its own generator (a uniform, then a random action, for each of its copies)."""
        ks = self.active.ks()
        greedy = self.q_net(pick(self.tensor(obs), ks), ks).argmax(-1)
        n, device = self.num_envs, self.device
        draws = [
            (torch.rand(n, generator=g, device=device),
             torch.randint(self.n_actions, (n,), generator=g, device=device))
            for g in self.q_net.member_generators(ks)
        ]  # fmt: skip
        u, random = (torch.stack(x) for x in zip(*draws, strict=True))
        eps = torch.as_tensor(epsilon(self.hp.exact, self.frames), dtype=torch.float32)
        explore = u < pick(eps.to(device), ks).unsqueeze(1)
        action = torch.zeros(self.members, n, dtype=torch.int64, device=device)
        action[slice(None) if ks is None else ks] = torch.where(explore, random, greedy)
        self.obs, self.action = obs, action.flatten().cpu().numpy()
        return self.action

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray, k: int) -> np.ndarray:
        """Member k's argmax_a Q(s, a) for its [n, ...] observations (evaluation)."""
        x = torch.as_tensor(obs, device=self.device, dtype=self.obs_dtype)
        ks = torch.tensor([k], device=self.device)
        return self.q_net(x[None], ks)[0].argmax(-1).cpu().numpy()

    def observe(self, next_obs, reward, terminated, truncated, final_obs) -> None:
        """The step into the replay memories of the active members."""
        step = (self.obs, self.action, reward, terminated, truncated, next_obs, final_obs)
        self.memory.add(*step, members=np.flatnonzero(self.active.host))

    def update(self, frames: np.ndarray) -> dict[str, np.ndarray] | None:
        """Each member's target update and gradient steps due at its frame count; returns [K]
        arrays (q_loss and q_mean NaN for members that did not train now) with `failed`: the
        loss of a member whose loss went non-finite now, 0 for the others."""
        hp, last, self.frames = self.hp.exact, self.frames, frames.copy()
        active = self.active.host
        sync = targets_due(last, frames, hp) & active
        if sync.any():
            tau = np.where(sync, hp["tau"], 0.0)  # lerp by 0 leaves a target exactly as it is
            weight = torch.as_tensor(tau, dtype=torch.float32).to(self.device).unsqueeze(1)
            self.target_net.flat.lerp_(self.q_net.flat, weight)
        due = np.where(active, steps_due(last, frames, hp), 0)
        if not due.any():
            return None
        lrs = self.hp.annealed("lr", linear(1.0, 0.0, frames, self.max_frame))
        lr = torch.as_tensor(lrs, dtype=torch.float32).to(self.device)
        beta = linear(hp["beta"], 1.0, frames, self.max_frame)
        stats = torch.zeros(3, self.members, device=self.device)  # loss and q sums, steps
        failed = torch.zeros(self.members, device=self.device)
        for i in range(due.max()):
            loss, q_mean, mask, now = self.gradient_step(np.flatnonzero(due > i), beta, lr)
            stats += torch.where(mask, torch.stack([loss, q_mean, torch.ones_like(loss)]), 0.0)
            failed = torch.where(now != 0, now, failed)
        q_loss, q_mean = (stats[:2] / stats[2]).cpu().numpy()  # 0 / 0: NaN where none trained
        failed = failed.cpu().numpy()
        self.active.fail(failed)
        return {
            "q_loss": q_loss,
            "q_mean": q_mean,
            "epsilon": epsilon(hp, frames),
            "lr": lrs,
            "failed": failed,
        }

    def gradient_step(
        self, members: np.ndarray, beta: np.ndarray, lr: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """One Adam step of `members` (only they run), each on a minibatch of its own replay.
        Returns every member's loss and mean Q ([K], detached), the mask of the members that
        stepped, and the non-finite loss of each member that failed now (then inactive), 0 for
        the others."""
        batch = self.memory.sample(members, self.cfg.batch_size, beta[members])
        rows = torch.as_tensor(members, device=self.device)
        ks = None if len(members) == self.members else rows
        q = self.q_net(batch["obs"], ks).gather(-1, batch["action"].unsqueeze(-1)).squeeze(-1)
        y = self.target(batch, ks)
        loss = (batch["weight"] * F.smooth_l1_loss(q, y, reduction="none")).mean(-1)
        mask = torch.zeros(self.members, dtype=torch.bool, device=self.device)
        mask[rows] = torch.isfinite(loss.detach())
        now = torch.zeros_like(mask)
        now[rows] = ~mask[rows]
        self.active.tensor &= ~now
        self.q_net.grad.zero_()
        # where and masked_fill, not a mask product: NaN * 0 would still be NaN
        torch.where(mask[rows], loss, 0.0).sum().backward()
        if bool(now.any()):  # one failed now: NaN gradient (the others' rows are 0)
            self.q_net.grad.masked_fill_(~mask.unsqueeze(1), 0.0)
        clip_grad_norm(self.q_net.grad, self.hp.clip_grad_val)
        # every member due: one step of all (lr 0 for one that failed now), no gather and scatter
        self.optimizer.step(lr * mask, mask if ks is not None else None)
        if self.cfg.prioritized:
            self.memory.update_priorities(members, batch["index"], (y - q).detach().cpu())
        spread = torch.zeros(3, self.members, device=self.device)
        spread[:, rows] = torch.stack([loss.detach(), q.detach().mean(-1), loss.detach()])
        return spread[0], spread[1], mask, torch.where(now, spread[2], 0.0)

    @torch.no_grad()
    def target(self, batch: dict[str, torch.Tensor], ks: torch.Tensor | None) -> torch.Tensor:
        """The TD targets ([A, B]) of the members ks (None: all K), each with its gamma, double
        or not."""
        next_obs = batch["next_obs"]
        double = pick(self.hp.double, ks)
        next_q_online = self.q_net(next_obs, ks) if bool(double.any()) else None
        return td_target(
            batch["reward"],
            batch["terminated"],
            self.target_net(next_obs, ks),
            next_q_online,
            pick(self.hp.gamma, ks).unsqueeze(1),
            double.unsqueeze(1) > 0,
        )

    def member_state(self, k: int) -> dict:
        """Member k's online and target weights, optimiser, generators, frame and replay."""
        return {
            "model": self.q_net.member_state(k),
            "target": self.target_net.flat[k].clone(),
            "optimizer": self.optimizer.member_state(k),
            "memory": self.memory.member_state(k),
            "frame": int(self.frames[k]),
        }

    def load_member_state(self, k: int, state: dict) -> None:
        self.q_net.load_member_state(k, state["model"])
        self.target_net.flat[k] = state["target"].to(self.device)
        self.optimizer.load_member_state(k, state["optimizer"])
        self.memory.load_member_state(k, state["memory"])
        self.frames[k] = state["frame"]
