"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications") for Box actions,
for a population of K members trained as one batched computation (K = 1: a single run): a
tanh-squashed Gaussian policy, twin soft Q-networks with Polyak-averaged targets (clipped
double-Q), and automatic tuning of the entropy temperature alpha.

Reads top to bottom: the squashed-Gaussian sampler, then the agent. Every step goes into each
member's replay ring; until its `learning_starts` frames a member acts uniformly at random, then
every `training_frequency` frames it takes `training_iter` gradient steps on minibatches of
`batch_size`. Counts are the member's frames (env steps summed over its vector envs), and the
schedule is per member (MEMBER_KEYS): a gradient step runs and moves only the members due, the
others' weights and optimiser states stay as they are. An idle member (`active` False: stopped,
failed, a free index) is not forwarded, sampled or trained. The policy acts in [-1, 1]^d,
which is what replay stores and the Q-networks see; the env gets the action rescaled to its
bounds. Log-probabilities are those of the [-1, 1] action, as in SB3. Randomness is per member:
member k's random actions and policy noise come from its actor generator, its batches from its
replay ring's generator. Nets: rlhp.stack.StackedSACActor and StackedTwinQ; optimiser:
rlhp.optim.StackedAdam.
"""

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from rlhp import config, optim
from rlhp.algo import plain
from rlhp.algo._schedule import updates_due
from rlhp.algo.replay import ReplayMemory
from rlhp.stack import Active, MemberParams, Stacked, StackedSACActor, StackedTwinQ

MEMBER_KEYS = config.MEMBER_KEYS["sac"]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def squashed_sample(
    mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(u), u = mean + std * eps (reparameterised: eps ~ N(0, 1), 0 for the mean), and
    log pi(a|s) by the change of variables log pi(a|s) = sum_i [log N(u_i) - log(1 - tanh(u_i)^2)]
    (Haarnoja et al. 2018, appendix C)."""
    u = mean + log_std.exp() * eps
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): exact and stable for large |u|
    log_det = 2.0 * (np.log(2.0) - u - F.softplus(-2.0 * u))
    log_normal = -0.5 * eps**2 - log_std - 0.5 * np.log(2.0 * np.pi)
    return torch.tanh(u), (log_normal - log_det).sum(-1)


def stream_seed(seed: int, stream: int) -> int:
    """An independent seed for a member's stream `stream` (critic weights, replay draws)."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


class SAC:
    """The SAC agent: `act` by sampling each member's policy, `observe` into its replay ring,
    `update` the members due. Arrays in and out are [K * num_envs, ...], member k owning rows
    k * num_envs ..."""

    member_keys = MEMBER_KEYS
    at_boundary = True  # everything is in member_state: a checkpoint can be taken at any step

    def __init__(self, cfgs: list[DictConfig], env, net: str, max_frame: int, device):
        cfg = plain(cfgs[0])  # the structure all members share
        self.cfg, self.device = cfg, device
        self.members, self.num_envs = len(cfgs), env.num_envs
        obs_dim = int(np.prod(env.observation_space.shape))
        self.act_shape = env.action_space.shape
        self.act_dim = act_dim = int(np.prod(self.act_shape))
        low, high = env.action_space.low.reshape(-1), env.action_space.high.reshape(-1)
        self.act_scale, self.act_bias = (high - low) / 2.0, (high + low) / 2.0
        layers = (cfg.hid_layers, cfg.hid_layers_activation)
        k = self.members
        self.actor = StackedSACActor(k, obs_dim, act_dim, *layers).to(device)
        self.critic = StackedTwinQ(k, obs_dim + act_dim, *layers).to(device)
        self.critic_target = StackedTwinQ(k, obs_dim + act_dim, *layers).to(device)
        self.critic_target.requires_grad_(False)
        # eps 1e-8: torch.optim.Adam's, as SB3's SAC
        self.actor_optimizer = optim.StackedAdam(self.actor.flat, self.actor.grad, eps=1e-8)
        self.critic_optimizer = optim.StackedAdam(self.critic.flat, self.critic.grad, eps=1e-8)
        # alpha is the initial temperature under auto_alpha, the fixed one otherwise
        self.log_alpha = torch.zeros(k, 1, device=device)
        self.alpha_grad = torch.zeros_like(self.log_alpha)
        self.alpha_optimizer = optim.StackedAdam(self.log_alpha, self.alpha_grad, eps=1e-8)
        self.target_entropy = -float(act_dim)  # the heuristic -dim(A) of the paper
        self.memory = ReplayMemory(
            k, cfg.memory_size, self.num_envs, (obs_dim,), torch.float32, (act_dim,),
            torch.float32, device,
        )  # fmt: skip
        self.hp = MemberParams(MEMBER_KEYS, cfgs, device)
        self.active = Active(k, device)
        self.frames = np.zeros(k, np.int64)  # each member's frames at the last update()
        self.failed = torch.zeros(k, device=device)  # non-finite losses of this update()
        self.obs: np.ndarray | None = None
        self.action: np.ndarray | None = None  # in [-1, 1]

    def set_member(self, k: int, cfg, seed: int) -> None:
        """Slot k gets a new member: its hyperparameters, fresh weights from its seed, fresh
        optimiser states and temperature, its own generators, an empty replay ring."""
        self.hp.set(k, cfg)
        self.actor.init_member(k, seed)
        self.critic.init_member(k, stream_seed(seed, 1))
        self.critic_target.init_member(k, stream_seed(seed, 1))
        self.critic_target.copy_member(k, self.critic)
        for optimizer in (self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer):
            optimizer.reset_member(k)
        self.log_alpha[k] = float(np.log(cfg.alpha))
        self.memory.reset_member(k, stream_seed(seed, 2))
        self.frames[k] = 0
        self.active[k] = True

    def ks(self, members: np.ndarray) -> torch.Tensor | None:
        """The stacked nets' `ks` of the members (indices, ascending): None when all K are."""
        if len(members) == self.members:
            return None
        return torch.as_tensor(members, device=self.device)

    def noise(self, members: np.ndarray, shape: tuple[int, ...], draw=torch.randn):
        """[M, *shape] draws, member k's from its own generator."""
        gens = self.actor.generators
        return torch.stack([draw(shape, generator=gens[k], device=self.device) for k in members])

    def policy(
        self, obs: torch.Tensor, members: np.ndarray, ks: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Squashed actions of the members' policies for their obs [M, B, obs_dim], and log pi."""
        mean, log_std = self.actor(obs, ks)
        eps = self.noise(members, mean.shape[1:])
        return squashed_sample(mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX), eps)

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        k, n = self.members, self.num_envs
        self.obs = obs.reshape(k * n, -1)
        active = self.active.host
        random = self.frames < self.hp.exact["learning_starts"]
        action = torch.zeros(k, n, self.act_dim, device=self.device)
        if (members := np.flatnonzero(active & random)).size:
            action[members] = self.noise(members, (n, self.act_dim), torch.rand) * 2.0 - 1.0
        if (members := np.flatnonzero(active & ~random)).size:
            x = torch.as_tensor(self.obs, dtype=torch.float32, device=self.device).view(k, n, -1)
            action[members] = self.policy(x[members], members, self.ks(members))[0]
        self.action = action.view(k * n, -1).cpu().numpy()
        scaled = self.action * self.act_scale + self.act_bias
        return scaled.reshape((k * n,) + self.act_shape)

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray, k: int) -> np.ndarray:
        """Member k's tanh of the policy's mean, scaled to the action bounds, for evaluation."""
        n = len(obs)
        x = torch.as_tensor(obs.reshape(1, n, -1), dtype=torch.float32, device=self.device)
        mean, _ = self.actor(x, torch.tensor([k], device=self.device))
        scaled = torch.tanh(mean[0]).cpu().numpy() * self.act_scale + self.act_bias
        return scaled.reshape((n,) + self.act_shape)

    def observe(self, next_obs, reward, terminated, truncated, final_obs) -> None:
        rows = self.obs.shape[0]
        flat = lambda x: None if x is None else x.reshape(rows, -1)  # noqa: E731
        self.memory.add(
            self.obs, self.action, reward, terminated, truncated, flat(next_obs), flat(final_obs),
            members=np.flatnonzero(self.active.host),
        )  # fmt: skip

    def step(
        self, net: Stacked, optimizer: optim.StackedAdam, loss: torch.Tensor, idx: torch.Tensor
    ) -> None:
        """One optimiser step of `net` on the losses [M] of the members `idx`, each with its lr
        and gradient-norm clip; a member whose loss is not finite is marked failed and left out
        of this and every later step."""
        active = self.active.tensor
        ok = torch.isfinite(loss.detach()) & active[idx]
        self.failed[idx] = torch.where(active[idx] & ~ok, loss.detach(), self.failed[idx])
        active[idx] = ok
        net.grad.zero_()
        # where, not a mask product: NaN * 0 would still be NaN
        torch.where(ok, loss, 0.0).sum().backward()
        mask = torch.zeros_like(active)
        mask[idx] = ok
        if not bool(ok.all()):  # a loss not finite: NaN gradient (the others' rows are 0)
            net.grad.masked_fill_(~mask.unsqueeze(1), 0.0)
        optim.clip_grad_norm(net.grad, self.hp.clip_grad_val)
        optimizer.step(self.hp.lr * mask, self.gather(mask, len(idx)))

    def gather(self, mask: torch.Tensor, members: int) -> torch.Tensor | None:
        """The mask an optimiser step gathers its members by; None when all K are in the
        gradient step: one step of all at once, lr 0 for those outside `mask`."""
        return None if members == self.members else mask

    def train_step(self, members: np.ndarray, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One gradient step of the members `members` on their batches ([M, B, ...]): the
        temperature, the critics, the actor, then the targets. Returns their q_loss,
        policy_loss, alpha and entropy ([4, M])."""
        hp, ks, obs = self.hp, self.ks(members), batch["obs"]
        idx = torch.as_tensor(members, device=self.device)
        # temperature: J(alpha) = E[-alpha (log pi(a|s) + target entropy)], by its gradient
        action, logp = self.policy(obs, members, ks)
        auto = torch.zeros_like(self.active.tensor)
        auto[idx] = (hp.auto_alpha[idx] > 0) & self.active.tensor[idx]
        self.alpha_grad[idx] = -(logp.detach() + self.target_entropy).mean(1, keepdim=True)
        self.alpha_optimizer.step(hp.lr * auto, self.gather(auto, len(members)))
        alpha = self.log_alpha[idx].exp()  # [M, 1]
        # critics: y = r + gamma (1 - d) (min_j Q_target_j(s', a') - alpha log pi(a'|s'))
        with torch.no_grad():
            next_action, next_logp = self.policy(batch["next_obs"], members, ks)
            next_q = torch.min(*self.critic_target(batch["next_obs"], next_action, ks))
            not_done = hp.gamma[idx].unsqueeze(1) * (1.0 - batch["terminated"])
            y = batch["reward"] + not_done * (next_q - alpha * next_logp)
        q1, q2 = self.critic(obs, batch["action"], ks)
        q_loss = 0.5 * (((q1 - y) ** 2).mean(1) + ((q2 - y) ** 2).mean(1))
        self.step(self.critic, self.critic_optimizer, q_loss, idx)
        # actor: J(pi) = E[alpha log pi(a|s) - min_j Q_j(s, a)], a reparameterised
        self.critic.requires_grad_(False)  # the actor's gradient only
        q_pi = torch.min(*self.critic(obs, action, ks))
        self.critic.requires_grad_(True)
        actor_loss = (alpha * logp - q_pi).mean(1)
        self.step(self.actor, self.actor_optimizer, actor_loss, idx)
        # Polyak averaging of the target critics, each member with its tau
        with torch.no_grad():
            target = self.critic_target.flat
            target[idx] = target[idx].lerp(self.critic.flat[idx], hp.tau[idx].unsqueeze(1))
        return torch.stack([q_loss, actor_loss, alpha[:, 0], -logp.mean(1)]).detach()

    def due(self, last: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Gradient steps each active member owes as its frames move from `last` to `frames`."""
        hp, active = self.hp.exact, self.active.host
        keys = ("learning_starts", "training_frequency", "training_iter")
        return np.array([
            updates_due(int(last[k]), int(frames[k]), *(int(hp[key][k]) for key in keys))
            if active[k] else 0
            for k in range(self.members)
        ])  # fmt: skip

    def update(self, frames: np.ndarray) -> dict[str, np.ndarray] | None:
        """The gradient steps due to each member at its frame count `frames[k]`; returns None
        when none was, else each member's mean losses over its steps ([K] arrays, NaN for the
        members that did not train) and `failed`: the loss of a member whose loss went
        non-finite now, 0 for the others."""
        due = self.due(self.frames, frames)
        self.frames = np.array(frames, np.int64)
        if not due.any():
            return None
        self.failed.zero_()
        sums = torch.zeros(4, self.members, device=self.device)
        for i in range(due.max()):
            # the device's mask: a member that failed in this update is out of the next steps
            members = np.flatnonzero((due > i) & self.active.tensor.cpu().numpy())
            if members.size == 0:
                break
            batch = self.memory.sample(members, self.cfg.batch_size)
            sums[:, members] += self.train_step(members, batch)
        mean = (sums / torch.as_tensor(due, device=self.device)).cpu().numpy()
        trained = due > 0
        q_loss, policy_loss, alpha, entropy = np.where(trained, mean, np.nan)
        failed = self.failed.cpu().numpy()
        self.active.fail(failed)
        return {
            "q_loss": q_loss,
            "policy_loss": policy_loss,
            "alpha": alpha,
            "entropy": entropy,
            "lr": np.where(trained, self.hp.exact["lr"], np.nan),
            "failed": failed,
        }

    def member_state(self, k: int) -> dict:
        nets = ("actor", "critic", "critic_target")
        optimizers = ("actor_optimizer", "critic_optimizer", "alpha_optimizer")
        return {
            **{name: getattr(self, name).member_state(k) for name in nets + optimizers},
            "log_alpha": self.log_alpha[k].clone(),
            "frame": int(self.frames[k]),
            "memory": self.memory.member_state(k),
        }

    def load_member_state(self, k: int, state: dict) -> None:
        nets = ("actor", "critic", "critic_target")
        optimizers = ("actor_optimizer", "critic_optimizer", "alpha_optimizer")
        for name in nets + optimizers:
            getattr(self, name).load_member_state(k, state[name])
        self.log_alpha[k] = state["log_alpha"].to(self.device)
        self.frames[k] = state["frame"]
        self.memory.load_member_state(k, state["memory"])
