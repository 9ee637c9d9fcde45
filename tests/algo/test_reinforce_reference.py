"""Member k of a REINFORCE population trains as an independent plain-torch REINFORCE would alone
(nn.Sequential policy and value nets, torch.optim.Adam, clip_grad_norm_, its own episodes per
env): the same losses and weights after each of its first updates, whatever the other members'
hyperparameters, batch sizes and frame counts."""

import numpy as np
import pytest
import torch
from _members import config
from torch import nn
from torch.distributions import Categorical, Normal

from rlhp.algo.reinforce import REINFORCE
from rlhp.env import VecEnv

from ._reference import linear

MAX_FRAME = 10_000
MEMBERS = [  # differ in every per-member hyperparameter, and start at different frames
    {"lr": 3e-3, "gamma": 0.9, "entropy_coef": 0.01, "val_loss_coef": 0.5, "clip_grad_val": 0.1,
     "lr_anneal": True, "batch_episodes": 2},
    {"lr": 1e-3, "gamma": 0.99, "entropy_coef": 0.0, "val_loss_coef": 1.0, "clip_grad_val": None,
     "lr_anneal": False, "batch_episodes": 3},
    {"lr": 1e-2, "gamma": 0.95, "entropy_coef": 0.1, "val_loss_coef": 0.25, "clip_grad_val": 1.0,
     "lr_anneal": True, "batch_episodes": 4},
]  # fmt: skip
START_FRAMES = np.array([0, 3000, 7000])


def discounted(rewards: list[float], gamma: float, last_value: float) -> list[float]:
    returns, g = [], last_value
    for r in reversed(rewards):
        g = r + gamma * g
        returns.insert(0, g)
    return returns


def mlp(params: dict, body: str, head: str) -> nn.Sequential:
    return nn.Sequential(
        linear(params, f"{body}.layers.0"), nn.Tanh(),
        linear(params, f"{body}.layers.1"), nn.Tanh(),
        linear(params, head),
    )  # fmt: skip


class Reference:
    """REINFORCE for one member, written plainly: episodes per env, a step per batch."""

    def __init__(self, params: dict, hp: dict, discrete: bool, baseline: bool, normalize: bool):
        self.hp, self.discrete, self.baseline, self.normalize = hp, discrete, baseline, normalize
        self.actor = mlp(params, "actor_body", "actor")
        self.critic = mlp(params, "critic_body", "critic")
        self.log_std = nn.Parameter(params["log_std"][0].clone())
        self.optimizer = torch.optim.Adam(self.parameters(), lr=hp["lr"], eps=1e-5)
        self.running = [[], []]  # (obs, action, reward) of each of its 2 envs
        self.batch = []  # ended episodes: (obs, actions, returns)

    def parameters(self) -> list[nn.Parameter]:
        return [*self.actor.parameters(), *self.critic.parameters(), self.log_std]

    def dist(self, out: torch.Tensor):
        return Categorical(logits=out) if self.discrete else Normal(out, self.log_std.exp())

    def observe(self, obs, actions, rewards, terminated, truncated, final_obs) -> None:
        for j, steps in enumerate(self.running):
            steps.append((obs[j], actions[j], float(rewards[j])))
            if not (terminated[j] or truncated[j]):
                continue
            last_value = 0.0
            if self.baseline and truncated[j] and not terminated[j]:
                with torch.no_grad():
                    last_value = self.critic(torch.as_tensor(final_obs[j])).item()
            o, a, r = zip(*steps, strict=True)
            self.batch.append((o, a, discounted(list(r), self.hp["gamma"], last_value)))
            self.running[j] = []

    def update(self, frame: int) -> dict[str, float] | None:
        hp = self.hp
        if len(self.batch) < hp["batch_episodes"]:
            return None
        lr = hp["lr"] * (1 - min(frame / MAX_FRAME, 1)) if hp["lr_anneal"] else hp["lr"]
        self.optimizer.param_groups[0]["lr"] = lr
        obs = torch.as_tensor(np.array([o for ep in self.batch for o in ep[0]]))
        actions = torch.as_tensor(np.array([a for ep in self.batch for a in ep[1]]))
        returns = torch.tensor([g for ep in self.batch for g in ep[2]], dtype=torch.float32)
        self.batch = []
        dist = self.dist(self.actor(obs))
        logp, entropy = dist.log_prob(actions), dist.entropy()
        if not self.discrete:
            logp, entropy = logp.sum(-1), entropy.sum(-1)
        advantages, value_loss = returns, torch.tensor(0.0)
        if self.baseline:
            values = self.critic(obs).squeeze(-1)
            advantages = returns - values.detach()
            value_loss = 0.5 * ((returns - values) ** 2).mean()
        if self.normalize:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -(advantages * logp).mean()
        loss = policy_loss + hp["val_loss_coef"] * value_loss - hp["entropy_coef"] * entropy.mean()
        self.optimizer.zero_grad()
        loss.backward()
        if hp["clip_grad_val"] is not None:
            nn.utils.clip_grad_norm_(self.parameters(), hp["clip_grad_val"])
        self.optimizer.step()
        return {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                "entropy": entropy.mean().item(), "lr": lr}  # fmt: skip

    def assert_weights(self, params: dict) -> None:
        pairs = [(self.actor, "actor_body", "actor"), (self.critic, "critic_body", "critic")]
        for net, body, head in pairs:
            names = [f"{body}.layers.0", f"{body}.layers.1", head]
            for layer, name in zip(net[::2], names, strict=True):
                torch.testing.assert_close(params[f"{name}.weight"], layer.weight.T.detach(),
                                           atol=1e-5, rtol=1e-4)  # fmt: skip
                torch.testing.assert_close(params[f"{name}.bias"][0], layer.bias.detach(),
                                           atol=1e-5, rtol=1e-4)  # fmt: skip
        torch.testing.assert_close(params["log_std"][0], self.log_std.detach(), atol=1e-5, rtol=0)


CASES = {  # env, steps, baseline, normalize_advantage
    "cartpole": ("cartpole", 200, True, True),
    "cartpole-no-baseline": ("cartpole", 200, False, False),
    "pendulum-time-limits": ("pendulum", 800, True, False),
}


@pytest.mark.parametrize("case", CASES)
def test_each_member_trains_as_a_plain_torch_reinforce_alone(case):
    env_name, steps, baseline, normalize = CASES[case]
    cfg = config(
        "algo=reinforce", f"env={env_name}", "env.num_envs=2", "algo.hid_layers=[16,16]",
        f"algo.baseline={baseline}", f"algo.normalize_advantage={normalize}",
    )  # fmt: skip
    cfgs = [cfg.algo.copy() for _ in MEMBERS]
    for c, hp in zip(cfgs, MEMBERS, strict=True):
        c.update(hp)
    env = VecEnv(cfg, [hp["gamma"] for hp in MEMBERS], members=len(MEMBERS))
    agent = REINFORCE(cfgs, env, "mlp", MAX_FRAME, torch.device("cpu"))
    for k, c in enumerate(cfgs):
        agent.set_member(k, c, seed=10 + k)
    discrete = env.action_space.shape == ()
    refs = [
        Reference(agent.member_state(k)["model"]["params"], hp, discrete, baseline, normalize)
        for k, hp in enumerate(MEMBERS)
    ]
    obs = env.reset([10, 11, 12])
    updates = np.zeros(len(MEMBERS), int)
    for t in range(1, steps + 1):
        actions = agent.act(obs)
        next_obs, reward, terminated, truncated, final_obs = env.step(actions)
        agent.observe(next_obs, reward, terminated, truncated, final_obs)
        frames = START_FRAMES + 2 * t
        result = agent.update(frames)
        for k, ref in enumerate(refs):
            rows = slice(2 * k, 2 * k + 2)
            last = None if final_obs is None else final_obs[rows]
            ref.observe(obs[rows], actions[rows], reward[rows], terminated[rows],
                        truncated[rows], last)  # fmt: skip
            expected = ref.update(int(frames[k]))
            if expected is None:  # member k did not train at this step
                assert result is None or np.isnan(result["policy_loss"][k])
                continue
            updates[k] += 1
            for key, value in expected.items():
                assert result[key][k] == pytest.approx(value, rel=1e-4, abs=1e-5), key
            ref.assert_weights(agent.member_state(k)["model"]["params"])
        obs = next_obs
    assert (updates >= 2).all(), updates
