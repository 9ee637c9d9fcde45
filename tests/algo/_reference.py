"""What the per-member reference tests share (issue #20's standard: each member of a population
equals an independent plain-torch implementation of its config trained alone): member configs,
the stacked layers as nn.Linear, the replay indices each member draws, and the run of a
3-member off-policy population in lockstep with its references."""

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import pytest
import torch
from _members import config
from omegaconf import DictConfig
from torch import nn


def member_config(overrides: list[str], member: dict) -> DictConfig:
    """The config of `overrides` with the member's seed and algo keys (`member`)."""
    cfg = config(*overrides, f"seed={member['seed']}")
    for key, value in member.items():
        if key != "seed":
            cfg.algo[key] = value
    return cfg


def linear(params: dict, name: str) -> nn.Linear:
    """An nn.Linear holding the stacked layer `name` of one member (weight [in, out])."""
    weight = params[f"{name}.weight"]
    layer = nn.Linear(*weight.shape)
    with torch.no_grad():
        layer.weight.copy_(weight.T)
        layer.bias.copy_(params[f"{name}.bias"][0])
    return layer


def recording(agent) -> dict[int, list[torch.Tensor]]:
    """The replay indices each member draws, in order."""
    drawn, sample = defaultdict(list), agent.memory.sample

    def record(members, batch_size, beta=None):
        batch = sample(members, batch_size, beta)
        for j, k in enumerate(members):
            drawn[int(k)].append(batch["index"][j].clone())
        return batch

    agent.memory.sample = record
    return drawn


def run_with_references(
    agent,
    env,
    cfgs: list[DictConfig],
    reference: Callable[[int], object],
    act: Callable[[object, np.ndarray, np.ndarray], np.ndarray],
    steps: int,
    late: int,
    rel: float | None = None,
) -> tuple[dict[int, object], dict[int, int]]:
    """`steps` vector steps of the off-policy `agent`'s 3 members in `env` beside their
    references (`reference(k)`, made from member k's state as it starts): members 0 and 1 from
    step 0, member 2 (its slot idle until then) from step `late`. `act(ref, obs, action)` checks
    a member's actions against its reference's and returns what the reference stores; each
    update's q_loss equals the reference's (within `rel` and 1e-5), which uses every batch the
    member drew. Returns the references and the number of updates each trained in."""
    n = env.num_envs
    drawn = recording(agent)
    obs = env.reset([c.seed for c in cfgs])
    refs = {}
    for k in (0, 1, 2):
        agent.set_member(k, cfgs[k].algo, cfgs[k].seed + 100 * (k == 2))
    agent.active[2] = False  # member 2's slot waits for it
    frames = np.zeros(3, np.int64)
    trained = defaultdict(int)
    for t in range(steps):
        for k in (0, 1) if t == 0 else (2,) if t == late else ():
            if k == 2:
                obs[2 * n :] = env.reset_member(2, cfgs[2].seed, cfgs[2].algo.gamma)
                agent.set_member(2, cfgs[2].algo, cfgs[2].seed)
            refs[k] = reference(k)
        action = agent.act(obs)
        next_obs, reward, terminated, truncated, final_obs = env.step(action)
        for k, ref in refs.items():
            rows = slice(k * n, (k + 1) * n)
            stored = act(ref, obs[rows], action[rows])
            final = next_obs[rows] if final_obs is None else final_obs[rows]
            ref.observe(obs[rows], stored, reward[rows], next_obs[rows],
                        terminated[rows], truncated[rows], final)  # fmt: skip
            frames[k] += n
        agent.observe(next_obs, reward, terminated, truncated, final_obs)
        out = agent.update(frames)
        for k, ref in refs.items():
            loss = ref.update(int(frames[k]), drawn[k])
            if loss is None:
                assert out is None or np.isnan(out["q_loss"][k])
            else:
                assert out["q_loss"][k] == pytest.approx(loss, rel=rel, abs=1e-5)
                trained[k] += 1
        assert all(not d for d in drawn.values())  # the reference used every batch drawn
        obs = next_obs
    return refs, trained
