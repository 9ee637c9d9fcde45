"""Network bodies shared by the algorithms: MLP and the Nature DQN CNN (Mnih et al. 2015)."""

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


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
