"""Deep Q-Network (Mnih et al. 2015), with double Q-learning (van Hasselt et al. 2016) and
prioritised experience replay (Schaul et al. 2016) as options.

Reads top to bottom: the Q-network, the TD target, then the agent. Every step goes into the
replay memory; once `learning_starts` frames are in, every `training_frequency` frames the agent
takes `training_iter` gradient steps on minibatches of `batch_size`, and every
`target_update_frequency` frames it moves the target network towards the online one (tau = 1:
a copy). Epsilon, lr (with `lr_anneal`) and PER's beta are annealed linearly
(rlhp.algo._schedule). All counts are frames (env steps summed over the vector envs), so they mean
the same whatever `env.num_envs` is. Discrete actions only; Atari frames stay uint8 in replay.
"""

import copy
import logging

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from rlhp.algo import plain
from rlhp.algo._schedule import crossed, linear, updates_due
from rlhp.algo.replay import ReplayMemory
from rlhp.net import body, gradient_step

log = logging.getLogger("rlhp")


class QNetwork(nn.Module):
    """Q(s, .) for every action: an MLP or the Nature CNN body, then a linear head."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, cfg: DictConfig, net: str):
        super().__init__()
        self.body, feat = body(obs_shape, net, cfg.hid_layers, cfg.hid_layers_activation)
        self.head = nn.Linear(feat, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs))


def td_target(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None,
    gamma: float,
) -> torch.Tensor:
    """y = r + gamma (1 - terminated) Q_target(s', a'), (batch,) from (batch, n_actions) values.

    DQN: a' = argmax_a Q_target(s', a). Double DQN (next_q_online given): a' = argmax_a
    Q_online(s', a), the online net chooses and the target net evaluates.
    """
    if next_q_online is None:
        next_value = next_q_target.max(1).values
    else:
        best = next_q_online.argmax(1, keepdim=True)
        next_value = next_q_target.gather(1, best).squeeze(1)
    return reward + gamma * (1.0 - terminated) * next_value


class DQN:
    """The DQN agent: epsilon-greedy `act`, `observe` into replay, `update` on a frame schedule."""

    at_boundary = True  # everything lives in state_dict: a checkpoint can be taken at any step

    def __init__(self, cfg: DictConfig, env, net: str, max_frame: int, device: torch.device):
        self.cfg, self.max_frame, self.device = plain(cfg), max_frame, device
        self.num_envs, self.n_actions = env.num_envs, int(env.action_space.n)
        obs_shape = env.observation_space.shape
        self.q_net = QNetwork(obs_shape, self.n_actions, cfg, net).to(device)
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=cfg.lr)
        self.obs_dtype = torch.uint8 if net == "cnn" else torch.float32
        self.memory = ReplayMemory(
            cfg.memory_size,
            self.num_envs,
            obs_shape,
            self.obs_dtype,
            (),
            torch.int64,
            device,
            prioritized=cfg.prioritized,
            alpha_per=cfg.alpha_per,
        )
        self.frame = 0  # frames seen at the last update() call
        self.obs: np.ndarray | None = None
        self.action: np.ndarray | None = None

    @property
    def epsilon(self) -> float:
        spec = self.cfg.explore_var_spec
        return linear(spec["start"], spec["end"], self.frame, spec["end_step"])

    @torch.inference_mode()
    def act(self, obs: np.ndarray) -> np.ndarray:
        q = self.q_net(torch.as_tensor(obs, device=self.device, dtype=self.obs_dtype))
        action = q.argmax(1).cpu().numpy()
        explore = np.random.uniform(size=self.num_envs) < self.epsilon
        action[explore] = np.random.randint(self.n_actions, size=int(explore.sum()))
        self.obs, self.action = obs, action
        return action

    @torch.inference_mode()
    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """argmax_a Q(s, a), for evaluation (nothing is recorded)."""
        q = self.q_net(torch.as_tensor(obs, device=self.device, dtype=self.obs_dtype))
        return q.argmax(1).cpu().numpy()

    def observe(self, next_obs, reward, terminated, truncated, final_obs) -> None:
        self.memory.add(self.obs, self.action, reward, terminated, truncated, next_obs, final_obs)

    def target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The TD target for a replay batch (double or not, as configured)."""
        with torch.no_grad():
            next_q_online = self.q_net(batch["next_obs"]) if self.cfg.double else None
            return td_target(
                batch["reward"],
                batch["terminated"],
                self.target_net(batch["next_obs"]),
                next_q_online,
                self.cfg.gamma,
            )

    def update(self, frame: int) -> dict[str, float] | None:
        """Train on the frame schedule; returns the losses when it trained."""
        cfg, last, self.frame = self.cfg, self.frame, frame
        if frame < cfg.learning_starts:
            return None
        if crossed(last, frame, cfg.target_update_frequency):
            for target, online in zip(
                self.target_net.parameters(), self.q_net.parameters(), strict=True
            ):
                target.data.lerp_(online.data, cfg.tau)
        steps = updates_due(
            last, frame, cfg.learning_starts, cfg.training_frequency, cfg.training_iter
        )
        if steps == 0:
            return None
        beta = linear(cfg.beta, 1.0, frame, self.max_frame)
        lr = cfg.lr * linear(1.0, 0.0, frame, self.max_frame) if cfg.lr_anneal else cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        stats = []
        for _ in range(steps):
            batch = self.memory.sample(cfg.batch_size, beta)
            q = self.q_net(batch["obs"]).gather(1, batch["action"].unsqueeze(1)).squeeze(1)
            y = self.target(batch)
            loss = (batch["weight"] * F.smooth_l1_loss(q, y, reduction="none")).mean()
            gradient_step(self.optimizer, loss, self.q_net.parameters(), cfg.clip_grad_val)
            if cfg.prioritized:
                td = (y - q).detach().abs().cpu().numpy()
                self.memory.update_priorities(batch["index"].numpy(), td)
            stats.append(torch.stack([loss.detach(), q.detach().mean()]))
        loss, q_mean = torch.stack(stats).mean(0).tolist()
        if not np.isfinite(loss):  # checked once per update: no device sync per gradient step
            raise FloatingPointError(f"DQN loss is {loss} at frame {frame}")
        return {"q_loss": loss, "q_mean": q_mean, "epsilon": self.epsilon, "lr": lr}

    def state_dict(self) -> dict:
        return {
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "memory": self.memory.state_dict(),
            "frame": self.frame,
        }

    def load_state_dict(self, state: dict) -> None:
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.memory.load_state_dict(state["memory"])
        self.frame = state["frame"]
        log.info(
            "dqn: resumed at frame %d with %d transitions in replay", self.frame, len(self.memory)
        )
