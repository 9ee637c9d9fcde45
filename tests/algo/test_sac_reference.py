"""A SAC population against an independent per-member reference (issue #20's standard): each
member of a 3-member population (differing in every per-member hyperparameter and in start
frame) equals a plain-torch SAC of its config trained alone (nn.Sequential actor and twin
critics, torch.optim.Adam, clip_grad_norm_, its own list of transitions, the replay indices the
population drew for it, the same noise draws), action for action, loss for loss and weight for
weight."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from rlhp.algo.sac import SAC
from rlhp.env import VecEnv

from ._reference import linear, member_config, run_with_references

CPU = torch.device("cpu")
N, STEPS, LATE = 2, 60, 10  # member 2 joins at vector step LATE
MEMBERS = [  # differ in every per-member hyperparameter
    {"seed": 0, "lr": 1e-3, "gamma": 0.99, "tau": 0.005, "alpha": 1.0, "auto_alpha": True,
     "clip_grad_val": None, "learning_starts": 16, "training_frequency": 2, "training_iter": 1},
    {"seed": 5, "lr": 3e-3, "gamma": 0.9, "tau": 0.1, "alpha": 0.2, "auto_alpha": False,
     "clip_grad_val": 0.5, "learning_starts": 24, "training_frequency": 4, "training_iter": 3},
    {"seed": 9, "lr": 5e-4, "gamma": 0.95, "tau": 0.5, "alpha": 0.5, "auto_alpha": True,
     "clip_grad_val": 1.0, "learning_starts": 12, "training_frequency": 2, "training_iter": 2},
]  # fmt: skip


def config(member: dict):
    overrides = [
        "algo=sac", "env=pendulum", f"env.num_envs={N}", "env.obs_norm=false",
        "env.reward_scale=false", "algo.hid_layers=[16,16]", "algo.batch_size=8",
        "algo.memory_size=1000",
    ]  # fmt: skip
    return member_config(overrides, member)


def q_network(params: dict, q: str) -> nn.Sequential:
    body = [linear(params, f"{q}_body.layers.{i}") for i in (0, 1)]
    return nn.Sequential(body[0], nn.ReLU(), body[1], nn.ReLU(), linear(params, q))


class Reference:
    """SAC for one member as a plain single-run implementation would write it."""

    def __init__(self, cfg, state: dict, seed: int):
        self.cfg = cfg.algo
        actor, critic = state["actor"]["params"], state["critic"]["params"]
        body = [linear(actor, f"body.layers.{i}") for i in (0, 1)]
        self.body = nn.Sequential(body[0], nn.ReLU(), body[1], nn.ReLU())
        self.mean, self.log_std = linear(actor, "mean"), linear(actor, "log_std")
        self.q1, self.q2 = q_network(critic, "q1"), q_network(critic, "q2")
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.actor_params = [*self.body.parameters(), *self.mean.parameters(),
                             *self.log_std.parameters()]  # fmt: skip
        self.q_params = [*self.q1.parameters(), *self.q2.parameters()]
        lr = self.cfg.lr
        self.actor_optimizer = torch.optim.Adam(self.actor_params, lr=lr, eps=1e-8)
        self.q_optimizer = torch.optim.Adam(self.q_params, lr=lr, eps=1e-8)
        self.log_alpha = torch.tensor(float(np.log(self.cfg.alpha)), requires_grad=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=lr, eps=1e-8)
        self.generator = torch.Generator().manual_seed(seed)
        self.frame = 0
        self.transitions: list[tuple] = []  # (obs, action in [-1, 1], reward, next_obs, term.)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(obs)
        mean, log_std = self.mean(h), self.log_std(h).clamp(-20, 2)
        dist = torch.distributions.Normal(mean, log_std.exp())
        u = mean + log_std.exp() * torch.randn(mean.shape, generator=self.generator)
        # log(1 - tanh(u)^2), in the form that keeps float32 precision where tanh(u) -> +-1
        log_det = 2 * (np.log(2) - u - torch.nn.functional.softplus(-2 * u))
        return torch.tanh(u), (dist.log_prob(u) - log_det).sum(-1)

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.frame < self.cfg.learning_starts:
            return (torch.rand((len(obs), 1), generator=self.generator) * 2 - 1).numpy()
        with torch.no_grad():
            return self.sample(torch.as_tensor(obs))[0].numpy()

    def observe(self, obs, action, reward, next_obs, terminated, truncated, final_obs) -> None:
        for e in range(len(obs)):
            done = terminated[e] or truncated[e]
            nxt = final_obs[e] if done else next_obs[e]
            self.transitions.append((obs[e], action[e], reward[e], nxt, float(terminated[e])))

    def update(self, frame: int, drawn: list[torch.Tensor]) -> float | None:
        """The member's schedule at `frame`; the minibatch indices are those it drew."""
        cfg, last, self.frame = self.cfg, self.frame, frame
        if frame < cfg.learning_starts:
            return None
        steps = frame // cfg.training_frequency - last // cfg.training_frequency
        steps *= cfg.training_iter
        if steps == 0:
            return None
        return float(np.mean([self.step(drawn.pop(0).numpy()) for _ in range(steps)]))

    def step(self, idx: np.ndarray) -> float:
        cfg = self.cfg
        batch = [self.transitions[i] for i in idx]
        obs, action, reward, next_obs, terminated = (
            torch.as_tensor(np.array(x)).float() for x in zip(*batch, strict=True)
        )
        pi, logp = self.sample(obs)
        if cfg.auto_alpha:
            alpha_loss = -(self.log_alpha * (logp.detach() - 1.0)).mean()  # target entropy -1
            self.alpha_optimizer.zero_grad()
            alpha_loss.backward()
            self.alpha_optimizer.step()
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_pi, next_logp = self.sample(next_obs)
            x = torch.cat([next_obs, next_pi], 1)
            next_q = torch.min(self.q1_target(x), self.q2_target(x)).squeeze(1)
            y = reward + cfg.gamma * (1 - terminated) * (next_q - alpha * next_logp)
        x = torch.cat([obs, action], 1)
        q_loss = 0.5 * (((self.q1(x).squeeze(1) - y) ** 2).mean()
                        + ((self.q2(x).squeeze(1) - y) ** 2).mean())  # fmt: skip
        self.q_optimizer.zero_grad()
        q_loss.backward()
        if cfg.clip_grad_val is not None:
            nn.utils.clip_grad_norm_(self.q_params, cfg.clip_grad_val)
        self.q_optimizer.step()
        x = torch.cat([obs, pi], 1)
        actor_loss = (alpha * logp - torch.min(self.q1(x), self.q2(x)).squeeze(1)).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        if cfg.clip_grad_val is not None:
            nn.utils.clip_grad_norm_(self.actor_params, cfg.clip_grad_val)
        self.actor_optimizer.step()
        with torch.no_grad():
            for net, target in ((self.q1, self.q1_target), (self.q2, self.q2_target)):
                for t, p in zip(target.parameters(), net.parameters(), strict=True):
                    t.mul_(1 - cfg.tau).add_(cfg.tau * p)
        return q_loss.item()


def flat_params(*nets: nn.Module) -> torch.Tensor:
    """Parameters in the stacked layout: weights [in, out], in module order."""
    return torch.cat([p.T.flatten() for net in nets for p in net.parameters()])


def test_each_member_equals_a_plain_torch_sac_of_its_config():
    cfgs = [config(m) for m in MEMBERS]
    env = VecEnv(cfgs[0], [c.algo.gamma for c in cfgs], members=3)
    agent = SAC([c.algo for c in cfgs], env, "mlp", 1000, CPU)

    def reference(k: int) -> Reference:
        return Reference(cfgs[k], agent.member_state(k), cfgs[k].seed)

    def act(ref: Reference, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        own = ref.act(obs)
        np.testing.assert_allclose(2.0 * own, action, atol=1e-4)  # bounds [-2, 2]
        return own

    refs, trained = run_with_references(agent, env, cfgs, reference, act, STEPS, LATE, 1e-4)
    assert min(trained.values()) >= 8
    for k, ref in refs.items():
        state = agent.member_state(k)
        close = dict(atol=1e-5, rtol=0)
        torch.testing.assert_close(
            agent.actor.flat[k], flat_params(ref.body, ref.mean, ref.log_std), **close
        )
        torch.testing.assert_close(agent.critic.flat[k], flat_params(ref.q1, ref.q2), **close)
        torch.testing.assert_close(
            agent.critic_target.flat[k], flat_params(ref.q1_target, ref.q2_target), **close
        )
        assert state["log_alpha"].item() == pytest.approx(ref.log_alpha.item(), abs=1e-6)
