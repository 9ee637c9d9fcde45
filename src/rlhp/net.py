"""Networks of the single agents: MLP and Nature DQN CNN (Mnih et al. 2015) bodies, REINFORCE's
actor-critic, and the policy head it shares with the stacked actor-critic of PPO and A2C
(rlhp.stack, whose tests check it against this one)."""

from collections.abc import Iterable

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Normal


class _Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = (x * 2).sigmoid_().mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Module):
    """tanh(x) = 2 sigmoid(2x) - 1 (to 2e-7): torch's CPU tanh is about 6x slower than its
    sigmoid here, and tanh layers were half the update time of a PPO population. One new
    tensor a pass (the sigmoid in place) and torch's fused tanh_backward: 1.06-1.17x the
    frames/s of a K = 16 PPO population against three temporaries each way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Tanh.apply(x)


# SLM-Lab's and SB3's names; silu is swish (Ramachandran et al. 2017)
ACTIVATIONS = {
    "tanh": Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


def init_layer(layer: nn.Module, std: float = np.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal initialisation, as in the PPO implementation details (Huang et al. 2022)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class NatureCNN(nn.Module):
    """Three conv layers on uint8 frame stacks scaled to [0, 1], then a dense layer."""

    def __init__(self, in_channels: int, out_dim: int, activation: str):
        super().__init__()
        act = ACTIVATIONS[activation]
        self.net = nn.Sequential(
            init_layer(nn.Conv2d(in_channels, 32, 8, stride=4)),
            act(),
            init_layer(nn.Conv2d(32, 64, 4, stride=2)),
            act(),
            init_layer(nn.Conv2d(64, 64, 3, stride=1)),
            act(),
            nn.Flatten(),
            init_layer(nn.Linear(64 * 7 * 7, out_dim)),
            act(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255.0)


def gradient_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: Iterable[torch.Tensor],
    clip_grad_val: float | None,
) -> None:
    """One optimiser step on `loss`, the gradient's global norm clipped to `clip_grad_val`."""
    optimizer.zero_grad()
    loss.backward()
    if clip_grad_val is not None:
        nn.utils.clip_grad_norm_(params, clip_grad_val)
    optimizer.step()


def mlp(in_dim: int, hid_layers: list[int], activation: str) -> nn.Sequential:
    layers, act = [], ACTIVATIONS[activation]
    for width in hid_layers:
        layers += [init_layer(nn.Linear(in_dim, width)), act()]
        in_dim = width
    return nn.Sequential(*layers)


def body(obs_shape: tuple[int, ...], net: str, hid_layers: list[int], activation: str):
    """The feature extractor for an observation space: (module, feature size)."""
    hid_layers = list(hid_layers)
    if net == "cnn":
        return NatureCNN(obs_shape[0], hid_layers[-1], activation), hid_layers[-1]
    return mlp(int(np.prod(obs_shape)), hid_layers, activation), hid_layers[-1]


class PolicyHead:
    """The action distribution of an actor's output, for a module with `discrete` and (for
    Box actions) a state-independent `log_std` that broadcasts against the output."""

    discrete: bool
    log_std: torch.Tensor

    def distribution(self, logits: torch.Tensor) -> Distribution:
        if self.discrete:
            return Categorical(logits=logits, validate_args=False)
        return Normal(logits, self.log_std.exp().expand_as(logits), validate_args=False)

    def log_prob(self, dist: Distribution, action: torch.Tensor) -> torch.Tensor:
        logp = dist.log_prob(action)
        return logp if self.discrete else logp.sum(-1)

    def entropy(self, dist: Distribution) -> torch.Tensor:
        ent = dist.entropy()
        return ent if self.discrete else ent.sum(-1)


class ActorCritic(PolicyHead, nn.Module):
    """A categorical or Gaussian (state-independent log std) policy and a value head, on one
    shared body or on two separate ones; `critic=False` leaves the value head out."""

    def __init__(
        self,
        obs_space: gym.Space,
        act_space: gym.Space,
        net: str,
        hid_layers: list[int],
        activation: str,
        shared: bool = False,
        critic: bool = True,
    ):
        super().__init__()
        self.actor_body, feat = body(obs_space.shape, net, hid_layers, activation)
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        act_dim = act_space.n if self.discrete else int(np.prod(act_space.shape))
        self.actor = init_layer(nn.Linear(feat, act_dim), std=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(act_dim))
        if critic:
            shared_body = self.actor_body if shared else None
            self.critic_body = shared_body or body(obs_space.shape, net, hid_layers, activation)[0]
            self.critic = init_layer(nn.Linear(feat, 1), std=1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.critic_body(obs)).squeeze(-1)

    def dist(self, obs: torch.Tensor) -> Distribution:
        return self.distribution(self.actor(self.actor_body(obs)))

    def dist_value(self, obs: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        """`dist(obs)` and `value(obs)`, running a shared body once instead of twice."""
        feat = self.actor_body(obs)
        critic_feat = feat if self.critic_body is self.actor_body else self.critic_body(obs)
        return self.distribution(self.actor(feat)), self.critic(critic_feat).squeeze(-1)

    def greedy(self, obs: torch.Tensor) -> torch.Tensor:
        """The most likely action: argmax of the logits, or the Gaussian's mean."""
        out = self.actor(self.actor_body(obs))
        return out.argmax(-1) if self.discrete else out
