"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications") for Box actions:
a tanh-squashed Gaussian policy, twin soft Q-networks with Polyak-averaged targets (clipped
double-Q), and automatic tuning of the entropy temperature alpha.

Reads top to bottom: the actor, the Q-network, the squashed-Gaussian sampler, then the agent.
Every step goes into the replay memory; until `learning_starts` frames the agent acts uniformly
at random, then every `training_frequency` frames it takes `training_iter` gradient steps on
minibatches of `batch_size`. Counts are frames (env steps summed over the vector envs). The
policy acts in [-1, 1]^d, which is what replay stores and the Q-networks see; the env gets the
action rescaled to its bounds. Log-probabilities are those of the [-1, 1] action, as in SB3.
"""

import copy
import logging

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.distributions import Normal

from rlhp.algo import plain
from rlhp.algo._schedule import updates_due
from rlhp.algo.replay import ReplayMemory
from rlhp.net import body, gradient_step

log = logging.getLogger("rlhp")

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


class Actor(nn.Module):
    """The Gaussian before the squashing: mean and log standard deviation per action dim."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: DictConfig):
        super().__init__()
        self.body, feat = body((obs_dim,), "mlp", cfg.hid_layers, cfg.hid_layers_activation)
        self.mean = nn.Linear(feat, act_dim)
        self.log_std = nn.Linear(feat, act_dim)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(obs)
        return self.mean(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)


class SoftQNetwork(nn.Module):
    """Q(s, a) from the concatenated observation and [-1, 1] action."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: DictConfig):
        super().__init__()
        self.body, feat = body(
            (obs_dim + act_dim,), "mlp", cfg.hid_layers, cfg.hid_layers_activation
        )
        self.head = nn.Linear(feat, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(torch.cat([obs, action], -1))).squeeze(-1)


def squashed_sample(
    mean: torch.Tensor, log_std: torch.Tensor, deterministic: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(u), u ~ N(mean, std) (reparameterised), and log pi(a|s) by the change of
    variables log pi(a|s) = sum_i [log N(u_i) - log(1 - tanh(u_i)^2)] (Haarnoja et al. 2018,
    appendix C)."""
    u = mean if deterministic else Normal(mean, log_std.exp()).rsample()
    action = torch.tanh(u)
    # log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): exact and stable for large |u|
    log_det = 2.0 * (np.log(2.0) - u - F.softplus(-2.0 * u))
    logp = (Normal(mean, log_std.exp()).log_prob(u) - log_det).sum(-1)
    return action, logp


class SAC:
    """The SAC agent: `act` by sampling the policy, `observe` into replay, `update` on schedule."""

    at_boundary = True  # everything lives in state_dict: a checkpoint can be taken at any step

    def __init__(self, cfg: DictConfig, env, net: str, max_frame: int, device: torch.device):
        self.cfg, self.device, self.num_envs = plain(cfg), device, env.num_envs
        obs_dim = int(np.prod(env.observation_space.shape))
        self.act_shape = env.action_space.shape
        act_dim = int(np.prod(self.act_shape))
        low, high = env.action_space.low, env.action_space.high
        self.act_scale, self.act_bias = (high - low) / 2.0, (high + low) / 2.0
        self.actor = Actor(obs_dim, act_dim, cfg).to(device)
        self.q1, self.q2 = (SoftQNetwork(obs_dim, act_dim, cfg).to(device) for _ in range(2))
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.q_optimizer = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], cfg.lr)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr)
        # alpha is the initial temperature under auto_alpha, the fixed one otherwise
        self.log_alpha = torch.tensor(float(np.log(cfg.alpha)), device=device, requires_grad=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=cfg.lr)
        self.target_entropy = -float(act_dim)  # the heuristic -dim(A) of the paper
        self.memory = ReplayMemory(
            cfg.memory_size,
            self.num_envs,
            (obs_dim,),
            torch.float32,
            (act_dim,),
            torch.float32,
            device,
        )
        self.frame = 0  # frames seen at the last update() call
        self.obs: np.ndarray | None = None
        self.action: np.ndarray | None = None  # in [-1, 1]

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        obs = obs.reshape(self.num_envs, -1)
        if self.frame < self.cfg.learning_starts:
            action = np.random.uniform(-1.0, 1.0, (self.num_envs, self.act_scale.size))
        else:
            mean, log_std = self.actor(
                torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            )
            action = squashed_sample(mean, log_std)[0].cpu().numpy()
        self.obs, self.action = obs, action
        scaled = action * self.act_scale.reshape(-1) + self.act_bias.reshape(-1)
        return scaled.reshape((self.num_envs,) + self.act_shape)

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """tanh of the policy's mean, scaled to the action bounds, for evaluation."""
        n = len(obs)
        obs = torch.as_tensor(obs.reshape(n, -1), dtype=torch.float32, device=self.device)
        mean, _ = self.actor(obs)
        scaled = torch.tanh(mean).cpu().numpy() * self.act_scale.reshape(
            -1
        ) + self.act_bias.reshape(-1)
        return scaled.reshape((n,) + self.act_shape)

    def observe(self, next_obs, reward, terminated, truncated, final_obs) -> None:
        flat = lambda x: None if x is None else x.reshape(self.num_envs, -1)  # noqa: E731
        self.memory.add(
            self.obs, self.action, reward, terminated, truncated, flat(next_obs), flat(final_obs)
        )

    def train_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One gradient step on temperature, critics and actor; returns the losses and alpha."""
        cfg, obs = self.cfg, batch["obs"]
        # temperature: J(alpha) = E[-alpha (log pi(a|s) + target entropy)]
        action, logp = squashed_sample(*self.actor(obs))
        if cfg.auto_alpha:
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            gradient_step(self.alpha_optimizer, alpha_loss, [self.log_alpha], None)
        alpha = self.log_alpha.detach().exp()
        # critics: y = r + gamma (1 - d) (min_j Q_target_j(s', a') - alpha log pi(a'|s'))
        with torch.no_grad():
            next_action, next_logp = squashed_sample(*self.actor(batch["next_obs"]))
            next_q = torch.min(
                self.q1_target(batch["next_obs"], next_action),
                self.q2_target(batch["next_obs"], next_action),
            )
            y = batch["reward"] + cfg.gamma * (1.0 - batch["terminated"]) * (
                next_q - alpha * next_logp
            )
        q1, q2 = self.q1(obs, batch["action"]), self.q2(obs, batch["action"])
        q_loss = 0.5 * (F.mse_loss(q1, y) + F.mse_loss(q2, y))
        q_params = [*self.q1.parameters(), *self.q2.parameters()]
        gradient_step(self.q_optimizer, q_loss, q_params, cfg.clip_grad_val)
        # actor: J(pi) = E[alpha log pi(a|s) - min_j Q_j(s, a)], a reparameterised
        q_pi = torch.min(self.q1(obs, action), self.q2(obs, action))
        actor_loss = (alpha * logp - q_pi).mean()
        gradient_step(self.actor_optimizer, actor_loss, self.actor.parameters(), cfg.clip_grad_val)
        # Polyak averaging of the target critics
        with torch.no_grad():
            for net, target in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                torch._foreach_lerp_(list(target.parameters()), list(net.parameters()), cfg.tau)
        return torch.stack([q_loss.detach(), actor_loss.detach(), alpha, -logp.detach().mean()])

    def update(self, frame: int) -> dict[str, float] | None:
        """Train on the frame schedule; returns the losses when it trained."""
        cfg, last, self.frame = self.cfg, self.frame, frame
        steps = updates_due(
            last, frame, cfg.learning_starts, cfg.training_frequency, cfg.training_iter
        )
        if steps == 0:
            return None
        stats = [self.train_step(self.memory.sample(cfg.batch_size)) for _ in range(steps)]
        q_loss, actor_loss, alpha, entropy = torch.stack(stats).mean(0).tolist()
        if not np.isfinite(q_loss + actor_loss):
            raise FloatingPointError(f"SAC loss is not finite at frame {frame}")
        return {
            "q_loss": q_loss,
            "policy_loss": actor_loss,
            "alpha": alpha,
            "entropy": entropy,
            "lr": cfg.lr,
        }

    def state_dict(self) -> dict:
        nets = ("actor", "q1", "q2", "q1_target", "q2_target")
        optims = ("q_optimizer", "actor_optimizer", "alpha_optimizer")
        return {
            **{name: getattr(self, name).state_dict() for name in nets + optims},
            "log_alpha": self.log_alpha.detach().clone(),
            "memory": self.memory.state_dict(),
            "frame": self.frame,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("actor", "q1", "q2", "q1_target", "q2_target"):
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        for name in ("q_optimizer", "actor_optimizer", "alpha_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.memory.load_state_dict(state["memory"])
        self.frame = state["frame"]
        log.info(
            "sac: resumed at frame %d with %d transitions in replay", self.frame, len(self.memory)
        )
