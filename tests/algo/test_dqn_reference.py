"""A DQN population against an independent per-member reference (issue #20's standard): each
member of a 3-member population (differing in every per-member hyperparameter and in start
frame) equals a plain-torch DQN of its config trained alone (nn.Sequential, torch.optim.Adam,
clip_grad_norm_, its own list of transitions, the replay indices the population drew for it, the
same exploration draws), loss for loss and weight for weight."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlhp.algo.dqn import DQN
from rlhp.env import VecEnv

from ._reference import member_config, run_with_references

CPU = torch.device("cpu")
N, MAX_FRAME, STEPS, LATE = 2, 400, 40, 12  # member 2 joins at vector step LATE
MEMBERS = [  # differ in every per-member hyperparameter
    {"seed": 0, "lr": 1e-3, "lr_anneal": False, "gamma": 0.99, "double": False, "tau": 1.0,
     "target_update_frequency": 8, "learning_starts": 16, "training_frequency": 2,
     "training_iter": 1, "clip_grad_val": 10.0, "alpha_per": 0.6, "beta": 0.4,
     "explore_var_spec": {"start": 1.0, "end": 0.1, "end_step": 60}},
    {"seed": 5, "lr": 3e-3, "lr_anneal": True, "gamma": 0.9, "double": True, "tau": 0.5,
     "target_update_frequency": 6, "learning_starts": 24, "training_frequency": 4,
     "training_iter": 2, "clip_grad_val": 0.5, "alpha_per": 0.8, "beta": 0.2,
     "explore_var_spec": {"start": 0.5, "end": 0.0, "end_step": 40}},
    {"seed": 9, "lr": 5e-4, "lr_anneal": False, "gamma": 0.95, "double": False, "tau": 0.25,
     "target_update_frequency": 4, "learning_starts": 12, "training_frequency": 2,
     "training_iter": 2, "clip_grad_val": None, "alpha_per": 0.4, "beta": 0.7,
     "explore_var_spec": {"start": 0.8, "end": 0.2, "end_step": 30}},
]  # fmt: skip


def config(member: dict, prioritized: bool):
    overrides = [
        "algo=dqn", "env=cartpole", f"env.num_envs={N}", f"env.max_frame={MAX_FRAME}",
        "algo.hid_layers=[16,16]", "algo.batch_size=8", "algo.memory_size=1000",
        f"algo.prioritized={prioritized}",
    ]  # fmt: skip
    return member_config(overrides, member)


def linear(start: float, end: float, step: int, end_step: int) -> float:
    return start + min(step / end_step, 1.0) * (end - start)


class Reference:
    """DQN for one member as a plain single-run implementation would write it."""

    def __init__(self, cfg, state: dict, n_actions: int, seed: int):
        self.cfg = cfg.algo
        params = state["model"]["params"]
        layers = [nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)]
        names = ["body.layers.0", "body.layers.1", "head"]
        with torch.no_grad():
            for layer, name in zip(layers[::2], names, strict=True):
                layer.weight.copy_(params[f"{name}.weight"].T)
                layer.bias.copy_(params[f"{name}.bias"][0])
        self.net = nn.Sequential(*layers)
        self.target = copy.deepcopy(self.net)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr, eps=1e-8)
        self.generator = torch.Generator().manual_seed(seed)
        self.n_actions, self.frame = n_actions, 0
        self.transitions: list[tuple] = []  # (obs, action, reward, next_obs, terminated)
        self.priority: list[float] = []  # |td| + eps of each transition
        self.max_priority = 1.0

    def act(self, obs: np.ndarray) -> np.ndarray:
        spec = self.cfg.explore_var_spec
        eps = linear(spec.start, spec.end, self.frame, spec.end_step)
        with torch.no_grad():
            greedy = self.net(torch.as_tensor(obs)).argmax(1)
        u = torch.rand(len(obs), generator=self.generator)
        random = torch.randint(self.n_actions, (len(obs),), generator=self.generator)
        return torch.where(u < torch.tensor(eps, dtype=torch.float32), random, greedy).numpy()

    def observe(self, obs, action, reward, next_obs, terminated, truncated, final_obs) -> None:
        for e in range(len(obs)):
            done = terminated[e] or truncated[e]
            nxt = final_obs[e] if done else next_obs[e]
            self.transitions.append((obs[e], action[e], reward[e], nxt, float(terminated[e])))
            self.priority.append(self.max_priority)

    def update(self, frame: int, drawn: list[torch.Tensor]) -> float | None:
        """The member's schedule at `frame`; the minibatch indices are those it drew."""
        cfg, last, self.frame = self.cfg, self.frame, frame
        if frame < cfg.learning_starts:
            return None
        if frame // cfg.target_update_frequency > last // cfg.target_update_frequency:
            for t, q in zip(self.target.parameters(), self.net.parameters(), strict=True):
                t.data.lerp_(q.data, cfg.tau)
        steps = frame // cfg.training_frequency - last // cfg.training_frequency
        steps *= cfg.training_iter
        if steps == 0:
            return None
        lr = cfg.lr * (1 - min(frame / MAX_FRAME, 1.0)) if cfg.lr_anneal else cfg.lr
        self.optimizer.param_groups[0]["lr"] = lr
        beta = linear(cfg.beta, 1.0, frame, MAX_FRAME)
        return float(np.mean([self.step(drawn.pop(0).numpy(), beta) for _ in range(steps)]))

    def step(self, idx: np.ndarray, beta: float) -> float:
        obs, action, reward, next_obs, terminated = (
            torch.as_tensor(np.array(x))
            for x in zip(*[self.transitions[i] for i in idx], strict=True)
        )
        weight = torch.ones(len(idx))
        if self.cfg.prioritized:
            p = np.array(self.priority) ** self.cfg.alpha_per
            w = (len(p) * p[idx] / p.sum()) ** -beta
            weight = torch.as_tensor(w / w.max(), dtype=torch.float32)
        q = self.net(obs).gather(1, action.long().unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            chooser = self.net if self.cfg.double else self.target
            best = chooser(next_obs).argmax(1, keepdim=True)
            next_value = self.target(next_obs).gather(1, best).squeeze(1)
            y = reward.float() + self.cfg.gamma * (1 - terminated.float()) * next_value
        loss = (weight * F.smooth_l1_loss(q, y, reduction="none")).mean()
        self.optimizer.zero_grad()
        loss.backward()
        if self.cfg.clip_grad_val is not None:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.clip_grad_val)
        self.optimizer.step()
        if self.cfg.prioritized:
            td = (y - q).detach().abs().double().numpy() + 1e-6
            for i, p in zip(idx, td, strict=True):
                self.priority[i] = p
            self.max_priority = max(self.max_priority, float(td.max()))
        return loss.item()


@pytest.mark.parametrize("prioritized", [False, True])
def test_each_member_equals_a_plain_torch_dqn_of_its_config(prioritized):
    cfgs = [config(m, prioritized) for m in MEMBERS]
    env = VecEnv(cfgs[0], [c.algo.gamma for c in cfgs], members=3)
    agent = DQN([c.algo for c in cfgs], env, "mlp", MAX_FRAME, CPU)

    def reference(k: int) -> Reference:
        return Reference(cfgs[k], agent.member_state(k), 2, cfgs[k].seed)

    def act(ref: Reference, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        np.testing.assert_array_equal(ref.act(obs), action)
        return action

    refs, trained = run_with_references(agent, env, cfgs, reference, act, STEPS, LATE)
    assert min(trained.values()) >= 10
    for k, ref in refs.items():
        params = agent.member_state(k)["model"]["params"]
        torch.testing.assert_close(params["head.weight"], ref.net[4].weight.T, atol=1e-5, rtol=0)
        torch.testing.assert_close(params["body.layers.0.weight"], ref.net[0].weight.T,
                                   atol=1e-5, rtol=0)  # fmt: skip
        target = agent.target_net.flat[k]
        ref_target = torch.cat([p.T.flatten() if p.dim() == 2 else p for p in
                                ref.target.parameters()])  # fmt: skip
        torch.testing.assert_close(target, ref_target, atol=1e-5, rtol=0)
