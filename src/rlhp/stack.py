"""Stacked networks: K members' weights side by side, trained as one batched computation.

Every parameter has a leading member dimension and lives in one flat [K, P] buffer (its gradient
in another), so the optimiser (rlhp.optim) updates all members with a few tensor ops and a
member's slice is a plain copy. Layers are batched matmuls (`torch.baddbmm`) and grouped
convolutions, never a Python loop over members; each member is initialised from its own
generator, in the same order as a population of one, so member i starts with exactly the weights
a single run with its seed would have.
"""

import warnings

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution, Normal

from rlhp.net import ACTIVATIONS, PolicyHead

# Parameters and their gradients are views into flat buffers: strided on purpose.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")


def pick(param: torch.Tensor, ks: torch.Tensor | None) -> torch.Tensor:
    """Members `ks` of a stacked parameter ([A] indices; autograd scatters their gradient back
    into the [K, ...] one, the others' rows get none), or all K (None)."""
    return param if ks is None else param[ks]


class Active:
    """Which of K members train, twice: `tensor` ([K] bool on the agent's device) for its math,
    `host` (numpy) for the loop and the agent's host-side indexing, read with no device sync.
    `active[k] = value` sets both. A member whose loss goes non-finite leaves `tensor` in the
    update's math; `fail` mirrors that into `host` from the [K] losses the update returns."""

    def __init__(self, members: int, device: torch.device):
        self.tensor = torch.ones(members, dtype=torch.bool, device=device)
        self.host = np.ones(members, bool)

    def __setitem__(self, k, value: bool) -> None:
        self.tensor[k] = value
        self.host[k] = value

    def fail(self, failed: np.ndarray) -> None:
        """The members whose loss went non-finite in this update (`failed` nonzero) leave."""
        self.host &= failed == 0

    def ks(self) -> torch.Tensor | None:
        """The indices of the active members on the device, or None when all K are (no gather)."""
        if self.host.all():
            return None
        return torch.as_tensor(np.flatnonzero(self.host), device=self.tensor.device)


def per_member(x: torch.Tensor, members: int, ks: torch.Tensor | None = None) -> torch.Tensor:
    """[K * n, ...] rows (member k owns rows k * n ...) -> [K, n, ...], or [A, n, ...] of the
    members ks."""
    return pick(x.reshape((members, -1) + x.shape[1:]), ks)


def spread(x: torch.Tensor, ks: torch.Tensor | None, members: int, fill: float = 0.0):
    """[A, ...] of the members ks -> [K, ...], `fill` in the idle members' rows."""
    if ks is None:
        return x
    out = torch.full((members,) + x.shape[1:], fill, dtype=x.dtype, device=x.device)
    out[ks] = x
    return out


class StackedLinear(nn.Module):
    """K linear layers: [K, B, in] -> [K, B, out]; weight [K, in, out], bias [K, 1, out].
    With `ks` ([A] member indices) only those members run: [A, B, in] -> [A, B, out]."""

    def __init__(self, members: int, in_dim: int, out_dim: int, gain: float = np.sqrt(2)):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim))
        self.gain = gain

    def init_weights(self, k: int, generator: torch.Generator) -> None:
        """Orthogonal weights as nn.Linear's [out, in] (Huang et al. 2022), zero bias."""
        w = torch.empty(self.weight.shape[2], self.weight.shape[1])
        nn.init.orthogonal_(w, self.gain, generator=generator)
        self.weight.data[k] = w.T
        self.bias.data[k] = 0.0

    def forward(self, x: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        return torch.baddbmm(pick(self.bias, ks), x, pick(self.weight, ks))


class StackedConv2d(nn.Module):
    """K conv layers as one grouped convolution over channel-stacked members:
    [B, K * in, H, W] -> [B, K * out, H', W']; with `ks` ([A] member indices) those A only."""

    def __init__(self, members: int, in_ch: int, out_ch: int, kernel: int, stride: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(members, out_ch))
        self.members, self.stride = members, stride

    def init_weights(self, k: int, generator: torch.Generator) -> None:
        w = torch.empty(self.weight.shape[1:])  # on the CPU, where the generator is
        nn.init.orthogonal_(w, np.sqrt(2), generator=generator)
        self.weight.data[k] = w
        self.bias.data[k] = 0.0

    def forward(self, x: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        w, b = pick(self.weight, ks), pick(self.bias, ks)
        groups = w.shape[0]
        return nn.functional.conv2d(x, w.flatten(0, 1), b.flatten(), self.stride, groups=groups)


class StackedMLP(nn.Module):
    def __init__(self, members: int, in_dim: int, hid_layers: list[int], activation: str):
        super().__init__()
        dims = [in_dim, *hid_layers]
        self.layers = nn.ModuleList(
            StackedLinear(members, a, b) for a, b in zip(dims, dims[1:], strict=False)
        )
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = self.act(layer(x, ks))
        return x


class StackedNatureCNN(nn.Module):
    """rlhp.net.NatureCNN for K members: uint8 [K, B, C, 84, 84] -> [K, B, out_dim]."""

    def __init__(self, members: int, in_channels: int, out_dim: int, activation: str):
        super().__init__()
        self.convs = nn.ModuleList(
            [
                StackedConv2d(members, in_channels, 32, 8, 4),
                StackedConv2d(members, 32, 64, 4, 2),
                StackedConv2d(members, 64, 64, 3, 1),
            ]
        )
        self.dense = StackedLinear(members, 64 * 7 * 7, out_dim)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        k, b = x.shape[:2]
        x = x.transpose(0, 1).reshape((b, -1) + x.shape[3:]).float() / 255.0
        for conv in self.convs:
            x = self.act(conv(x, ks))
        x = x.reshape(b, k, -1).transpose(0, 1)
        return self.act(self.dense(x, ks))


def stacked_body(members: int, obs_shape, net: str, hid_layers: list[int], activation: str):
    hid_layers = list(hid_layers)
    if net == "cnn":
        return StackedNatureCNN(members, obs_shape[0], hid_layers[-1], activation)
    return StackedMLP(members, int(np.prod(obs_shape)), hid_layers, activation)


class Stacked(nn.Module):
    """Base of the stacked nets: after a subclass builds its layers it calls `_flatten()`, which
    makes every parameter a view into one flat [K, P] buffer (`self.flat`) and its gradient a
    view into another (`self.grad`), so rlhp.optim updates all members at once and a member's
    slice is a plain copy. `init_member` draws member k's weights from its seed (every module
    with `init_weights`, in module order) and gives it its own sampling generator."""

    members: int

    def _flatten(self) -> None:
        """Move every parameter into one [K, P] buffer; gradients into another."""
        flat = torch.cat([p.data.flatten(1) for p in self.parameters()], dim=1)
        self._bind(flat, torch.zeros_like(flat))
        self.generators: list[torch.Generator | None] = [None] * self.members

    def _bind(self, flat: torch.Tensor, grad: torch.Tensor) -> None:
        """Make every parameter (and its gradient) a view into flat (and grad)."""
        start = 0
        for p in self.parameters():
            size = p[0].numel()
            p.data = flat[:, start : start + size].view(p.shape)
            p.grad = grad[:, start : start + size].view(p.shape)
            start += size
        self.flat, self.grad = flat, grad

    def to(self, device: torch.device) -> "Stacked":
        """Move the buffers (parameters stay views into them)."""
        self._bind(self.flat.to(device), self.grad.to(device))
        return self

    def init_member(self, k: int, seed: int) -> None:
        """Fresh weights for member k from its seed, and its own sampling generator."""
        generator = torch.Generator().manual_seed(seed)
        for module in self.modules():
            if hasattr(module, "init_weights"):
                module.init_weights(k, generator)
        self.generators[k] = torch.Generator(self.flat.device).manual_seed(seed)

    def member_generators(self, ks: torch.Tensor | None) -> list[torch.Generator]:
        """The sampling generators of the members ks (None: all K)."""
        return self.generators if ks is None else [self.generators[k] for k in ks.tolist()]

    def copy_member(self, k: int, source: "Stacked") -> None:
        """Member k's weights from `source` (same layout): e.g. a target net from its online net."""
        self.flat[k] = source.flat[k]

    def member_state(self, k: int) -> dict:
        """Member k's parameters by name (as a one-member net holds them) and its generator."""
        params = {name: p[k].clone() for name, p in self.named_parameters()}
        return {"params": params, "generator": self.generators[k].get_state()}

    def load_member_state(self, k: int, state: dict) -> None:
        for name, p in self.named_parameters():
            p.data[k] = state["params"][name].to(p.device)
        self.generators[k].set_state(state["generator"])


class StackedActorCritic(PolicyHead, Stacked):
    """rlhp.net.ActorCritic for K members: a categorical or Gaussian (state-independent log std)
    policy and a value head, on one shared body or two. Inputs and outputs are [K, B, ...].

    All parameters are views into `self.flat` ([K, P]) and their gradients into `self.grad`.
    Randomness comes from one generator per member (`self.generators`), so a member's actions
    never depend on the other members. Every method takes `ks` ([A] member indices): only those
    members run, on [A, B, ...] inputs; idle members cost nothing and their generators do not
    move.
    """

    def __init__(
        self,
        members: int,
        obs_space: gym.Space,
        act_space: gym.Space,
        net: str,
        hid_layers: list[int],
        activation: str,
        shared: bool = False,
    ):
        super().__init__()
        self.members = members
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        self.act_dim = act_space.n if self.discrete else int(np.prod(act_space.shape))
        feat = list(hid_layers)[-1]
        self.actor_body = stacked_body(members, obs_space.shape, net, hid_layers, activation)
        self.critic_body = (
            self.actor_body
            if shared
            else stacked_body(members, obs_space.shape, net, hid_layers, activation)
        )
        self.actor = StackedLinear(members, feat, self.act_dim, gain=0.01)
        self.critic = StackedLinear(members, feat, 1, gain=1.0)
        self.log_std = nn.Parameter(torch.zeros(members, 1, self.act_dim))
        self._flatten()

    def init_member(self, k: int, seed: int) -> None:
        super().init_member(k, seed)
        self.log_std.data[k] = 0.0

    def value(self, obs: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        return self.critic(self.critic_body(obs, ks), ks).squeeze(-1)

    def logits_value(
        self, obs: torch.Tensor, ks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy output and V(obs), running a shared body once."""
        feat = self.actor_body(obs, ks)
        shared = self.critic_body is self.actor_body
        critic_feat = feat if shared else self.critic_body(obs, ks)
        return self.actor(feat, ks), self.critic(critic_feat, ks).squeeze(-1)

    def logits(self, obs: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        return self.actor(self.actor_body(obs, ks), ks)

    def distribution(self, logits: torch.Tensor, ks: torch.Tensor | None = None) -> Distribution:
        if self.discrete:
            return super().distribution(logits)
        return Normal(logits, pick(self.log_std, ks).exp().expand_as(logits), validate_args=False)

    def sample(self, logits: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        """One action per [K, B] (or [A, B]) entry, each member's randomness from its own
        generator."""
        b = logits.shape[1]
        shape = (b,) if self.discrete else (b, self.act_dim)
        draw = torch.rand if self.discrete else torch.randn
        generators = self.member_generators(ks)[: len(logits)]
        noise = torch.stack([draw(shape, generator=g, device=logits.device) for g in generators])
        if self.discrete:  # inverse CDF of the categorical
            cdf = logits.softmax(-1).cumsum(-1)
            return (cdf < noise.unsqueeze(-1)).sum(-1).clamp(max=self.act_dim - 1)
        return logits + pick(self.log_std, ks).exp() * noise

    def greedy(self, obs: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        """The most likely action: argmax of the logits, or the Gaussian's mean."""
        out = self.logits(obs, ks)
        return out.argmax(-1) if self.discrete else out


class StackedQNetwork(Stacked):
    """rlhp.algo.dqn's Q-network for K members: Q(s, .) for every action, [K, B, n_actions],
    from an MLP or Nature CNN body and a linear head (orthogonal, gain 1)."""

    def __init__(
        self,
        members: int,
        obs_shape: tuple[int, ...],
        n_actions: int,
        net: str,
        hid_layers: list[int],
        activation: str,
    ):
        super().__init__()
        self.members = members
        self.body = stacked_body(members, obs_shape, net, hid_layers, activation)
        self.head = StackedLinear(members, list(hid_layers)[-1], n_actions, gain=1.0)
        self._flatten()

    def forward(self, obs: torch.Tensor, ks: torch.Tensor | None = None) -> torch.Tensor:
        """Q-values [K, B, n_actions], or [A, B, n_actions] of the members ks ([A] indices)."""
        return self.head(self.body(obs, ks), ks)


class StackedSACActor(Stacked):
    """rlhp.algo.sac's actor for K members: the mean and log standard deviation ([A, B, act_dim]
    each) of the Gaussian before tanh squashing, from an MLP body, of the members ks (None: all
    K)."""

    def __init__(
        self, members: int, obs_dim: int, act_dim: int, hid_layers: list[int], activation: str
    ):
        super().__init__()
        self.members = members
        self.body = StackedMLP(members, obs_dim, list(hid_layers), activation)
        self.mean = StackedLinear(members, list(hid_layers)[-1], act_dim, gain=0.01)
        self.log_std = StackedLinear(members, list(hid_layers)[-1], act_dim, gain=0.01)
        self._flatten()

    def forward(
        self, obs: torch.Tensor, ks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(obs, ks)
        return self.mean(h, ks), self.log_std(h, ks)


class StackedTwinQ(Stacked):
    """rlhp.algo.sac's twin soft Q-networks for K members: (Q1(s, a), Q2(s, a)), [A, B] each,
    from the concatenated observation and action, of the members ks (None: all K). Both live in
    member k's one flat row, so a gradient-norm clip spans the pair, as over one model's
    parameters."""

    def __init__(self, members: int, in_dim: int, hid_layers: list[int], activation: str):
        super().__init__()
        self.members = members
        self.q1_body = StackedMLP(members, in_dim, list(hid_layers), activation)
        self.q1 = StackedLinear(members, list(hid_layers)[-1], 1, gain=1.0)
        self.q2_body = StackedMLP(members, in_dim, list(hid_layers), activation)
        self.q2 = StackedLinear(members, list(hid_layers)[-1], 1, gain=1.0)
        self._flatten()

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, ks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, action], -1)
        q1 = self.q1(self.q1_body(x, ks), ks)
        q2 = self.q2(self.q2_body(x, ks), ks)
        return q1.squeeze(-1), q2.squeeze(-1)


class MemberParams:
    """Per-member hyperparameters as [K] tensors on the device: `hp.lr[k]` is member k's lr;
    booleans are 0/1, and None (e.g. `clip_grad_val: null`, no clipping) is inf. `hp.exact`
    holds the same values as float64 numpy arrays (schedules and reported figures)."""

    def __init__(self, keys: tuple[str, ...], cfgs: list, device: torch.device):
        self.keys, self.device = keys, device
        self.exact = {key: np.zeros(len(cfgs)) for key in keys}
        for k, cfg in enumerate(cfgs):
            self.set(k, cfg)

    def set(self, k: int, cfg) -> None:
        """Member k's values from its algo config."""
        for key in self.keys:
            value = cfg[key]
            self.exact[key][k] = float("inf") if value is None else float(value)
            setattr(
                self, key, torch.as_tensor(self.exact[key], dtype=torch.float32).to(self.device)
            )

    def annealed(self, key: str, decay: np.ndarray) -> np.ndarray:
        """`key` times `decay` for the members whose `<key>_anneal` is on (float64)."""
        return self.exact[key] * np.where(self.exact[f"{key}_anneal"] > 0, decay, 1.0)
