"""Experience replay for a population's off-policy members (DQN, SAC): uniform, or prioritised by
TD error with sum trees (Schaul et al. 2016). K members' memories live in one set of arrays with
a member dimension in front, each member with its own write position, size and random stream.

A member's memory is sized in frames (one transition per env step of each of its env copies) and
laid out as a ring of rows, one row per vector step with a column per copy: [K, rows, num_envs,
...]. Each observation is stored once: the next observation of row t is row t+1 of the same
column, except where the episode ended at t. A terminal transition needs no next observation (its
target is masked); the last observation of an episode cut by a time limit is kept aside in
`final`.

Atari (frame_stack > 1): an observation is a stack of the last frame_stack 84x84 frames, newest
last. Only the newest frame is stored and stacks are rebuilt when sampling, as Dopamine and
SB3's optimize_memory_usage do: 7 KB a frame instead of 28 KB. A stack never reaches back past its
episode's first observation: the frames before it are zeros, as ale_py's AtariVectorEnv gives
them at reset. The ring keeps frame_stack - 1 rows more than it samples from, so the oldest
transition's stack is whole.

Storage is numpy arrays on the CPU (their fancy indexing is ~10x faster than torch's at these
sizes); batches go to the agent's device as tensors and checkpoints hold tensors (torch.save
writes them without pickle's 4 GB limit). Each member draws from its own torch.Generator, so its
batches never depend on what the other members hold.
"""

import math

import numpy as np
import torch


class SumTrees:
    """K complete binary trees over `capacity` leaves (priorities) in one [K, 2 * capacity] array:
    node 1 is a root, leaf i is node capacity + i, each node holds the sum of its children. Every
    operation takes members [M] and leaves [M, L] and goes level by level for all members at once,
    reading and writing the flattened array at member k's offset k * 2 * capacity.
    """

    def __init__(self, members: int, capacity: int):
        self.capacity = 1 << max(capacity - 1, 0).bit_length()  # leaves, a power of two
        self.depth = self.capacity.bit_length() - 1
        self.tree = np.zeros((members, 2 * self.capacity))
        self.nodes = self.tree.reshape(-1)  # a view: node i of member k is k * 2 * capacity + i

    def _offset(self, members: np.ndarray) -> np.ndarray:
        return members[:, None] * (2 * self.capacity)

    def total(self, members: np.ndarray) -> np.ndarray:
        return self.tree[members, 1]

    def get(self, members: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        return self.nodes.take(self._offset(members) + self.capacity + leaves)

    def set(self, members: np.ndarray, leaves: np.ndarray, values: np.ndarray) -> None:
        offset, nodes = self._offset(members), leaves + self.capacity
        self.nodes[offset + nodes] = values
        for _ in range(self.depth):  # every leaf has the same depth: one level at a time
            nodes = nodes // 2
            left = offset + 2 * nodes
            self.nodes[offset + nodes] = self.nodes.take(left) + self.nodes.take(left + 1)

    def find(self, members: np.ndarray, mass: np.ndarray) -> np.ndarray:
        """For each mass m of member k's row, the leaf i with sum(p[:i]) <= m < sum(p[:i+1]) in
        k's tree, never a zero leaf."""
        offset, nodes = self._offset(members), np.ones(mass.shape, np.int64)
        for _ in range(self.depth):
            left = 2 * nodes
            left_sum = self.nodes.take(offset + left)
            # rounding can leave m just above a subtree's sum: never descend into a zero subtree
            right = (mass >= left_sum) & (self.nodes.take(offset + left + 1) > 0)
            mass = np.where(right, mass - left_sum, mass)
            nodes = left + right
        return nodes - self.capacity


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty(0, dtype=dtype).numpy().dtype


class ReplayMemory:
    """K members' replay rings of `memory_size` frames each, with per-member write positions and
    sizes (`sizes`: transitions held), generators, final observations and sum trees.

    `add` stores one vector step of every member; `sample` returns a batch of each member's own
    transitions as tensors [M, batch_size, ...] on `device`, with `index` (slots row * num_envs +
    env, for `update_priorities`) and `weight` (importance-sampling weights, all 1 when uniform).
    """

    def __init__(
        self,
        members: int,
        memory_size: int,
        num_envs: int,
        obs_shape: tuple,
        obs_dtype: torch.dtype,
        action_shape: tuple,
        action_dtype: torch.dtype,
        device: torch.device,
        prioritized: bool = False,
        frame_stack: int = 1,
        priority_eps: float = 1e-6,
    ):
        self.members, self.num_envs, self.device = members, num_envs, device
        self.frame_stack, self.priority_eps = frame_stack, priority_eps
        self.capacity = max(memory_size // num_envs, 1)  # rows of whole transitions
        # + the row holding the newest next obs, + frame_stack - 1 rows of the oldest stacks
        self.rows = self.capacity + frame_stack
        shape = (members, self.rows, num_envs)
        frame = tuple(obs_shape[1:]) if frame_stack > 1 else tuple(obs_shape)
        self.obs = np.zeros(shape + frame, _numpy_dtype(obs_dtype))
        self.actions = np.zeros(shape + tuple(action_shape), _numpy_dtype(action_dtype))
        self.rewards = np.zeros(shape, np.float32)
        self.terminated = np.zeros(shape, bool)
        self.cut = np.zeros(shape, bool)  # truncated: the next obs is in final
        self.first = np.zeros(shape, bool)  # the obs begins an episode: stacks stop there
        self.first[:, 0] = True
        self.final: list[dict[int, np.ndarray]] = [{} for _ in range(members)]  # slot -> last obs
        self.pos = np.zeros(members, np.int64)  # the row the next step goes to (newest next obs)
        self.steps = np.zeros(members, np.int64)  # vector steps added since reset_member
        self.generators = [torch.Generator() for _ in range(members)]
        self.alpha_per = np.full(members, 0.6)
        self.max_priority = np.ones(members)  # new transitions get the largest priority so far
        self.tree = SumTrees(members, self.rows * num_envs) if prioritized else None

    @property
    def bytes_per_frame(self) -> int:
        """The memory one stored transition (frame) takes: its observation (a stack's newest
        frame), action, reward, three flags and, prioritised, about two float64 tree nodes."""
        arrays = (self.obs, self.actions, self.rewards, self.terminated, self.cut, self.first)
        size = sum(x.itemsize * math.prod(x.shape[3:]) for x in arrays)
        return size + (16 if self.tree is not None else 0)

    @property
    def sizes(self) -> np.ndarray:
        """[K] transitions (frames) each member holds."""
        return np.minimum(self.steps, self.capacity) * self.num_envs

    def reset_member(self, k: int, seed: int, alpha_per: float = 0.6) -> None:
        """Member k's ring emptied, its generator seeded with `seed`, its PER exponent set."""
        self.pos[k] = self.steps[k] = 0
        self.cut[k] = False
        self.first[k, 0] = True
        self.final[k] = {}
        self.generators[k].manual_seed(seed)
        self.alpha_per[k], self.max_priority[k] = alpha_per, 1.0
        if self.tree is not None:
            self.tree.tree[k] = 0

    def _split(self, x: np.ndarray, ks: np.ndarray) -> np.ndarray:
        """Rows [K * num_envs, ...] as [M, num_envs, ...] of the members ks."""
        x = np.asarray(x)
        return x.reshape((self.members, self.num_envs) + x.shape[1:])[ks]

    def _stored(self, obs: np.ndarray) -> np.ndarray:
        """What is stored of observations [..., *obs_shape]: a stack's newest frame."""
        return obs[..., -1, :, :] if self.frame_stack > 1 else obs

    def _slots(self, rows: np.ndarray) -> np.ndarray:
        """[M, num_envs] slots of one row per member."""
        return rows[:, None] * self.num_envs + np.arange(self.num_envs)

    def add(
        self, obs, action, reward, terminated, truncated, next_obs, final_obs, members=None
    ) -> None:
        """One vector step: arrays [K * num_envs, ...] as the loop passes them (final_obs None or
        holding the last obs of the rows that ended); only `members` (indices) when given."""
        ks = np.arange(self.members) if members is None else np.asarray(members, np.int64)
        p = self.pos[ks]
        q = (p + 1) % self.rows
        terminated = self._split(terminated, ks).astype(bool)
        cut = self._split(truncated, ks).astype(bool) & ~terminated
        self.obs[ks, p] = self._stored(self._split(obs, ks))
        self.actions[ks, p] = self._split(action, ks)
        self.rewards[ks, p] = self._split(reward, ks)
        self.terminated[ks, p], self.cut[ks, p] = terminated, cut
        for m, env in np.argwhere(cut):
            last = final_obs[ks[m] * self.num_envs + env]
            self.final[ks[m]][int(p[m]) * self.num_envs + int(env)] = self._stored(last).copy()
        for m, env in np.argwhere(self.cut[ks, q]):  # row q's old transition is gone
            del self.final[ks[m]][int(q[m]) * self.num_envs + int(env)]
        self.obs[ks, q] = self._stored(self._split(next_obs, ks))
        self.terminated[ks, q], self.cut[ks, q] = False, False
        self.first[ks, q] = terminated | cut
        self.pos[ks], self.steps[ks] = q, self.steps[ks] + 1
        if self.tree is not None:
            # row p is new; rows q (pending) and q + frame_stack - 1 (left the window) hold none
            old = (q + self.frame_stack - 1) % self.rows
            leaves = np.concatenate([self._slots(p), self._slots(q), self._slots(old)], 1)
            new = self.max_priority[ks] ** self.alpha_per[ks]
            values = np.zeros(leaves.shape)
            values[:, : self.num_envs] = new[:, None]
            self.tree.set(ks, leaves, values)

    def sample(
        self, members: np.ndarray, batch_size: int, beta: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """batch_size transitions of each member's own ring, drawn with its own generator:
        uniform, or with P(i) = p_i^alpha / sum_j p_j^alpha (stratified over batch_size equal
        slices of the total) and weights w_i = (N P(i))^-beta[k] / max over the batch, N the
        transitions member k holds (beta None: weights of 1). Tensors [M, batch_size, ...]."""
        ks = np.asarray(members, np.int64)
        held = np.minimum(self.steps[ks], self.capacity)
        if not held.all():
            raise ValueError(f"sample from an empty replay memory (members {ks[held == 0]})")
        draws = 2 if self.tree is None else 1
        u = torch.stack(
            [
                torch.rand(draws, batch_size, generator=self.generators[k], dtype=torch.float64)
                for k in ks
            ]
        ).numpy()
        if self.tree is None:
            back = (u[:, 0] * held[:, None]).astype(np.int64)  # rows back from the newest
            rows = (self.pos[ks, None] - 1 - back) % self.rows
            slots = rows * self.num_envs + (u[:, 1] * self.num_envs).astype(np.int64)
            weight = np.ones(slots.shape)
        else:
            total = self.tree.total(ks)[:, None]
            mass = (np.arange(batch_size) + u[:, 0]) * (total / batch_size)
            slots = self.tree.find(ks, np.minimum(mass, np.nextafter(total, 0)))
            prob = self.tree.get(ks, slots) / total
            beta = np.zeros(len(ks)) if beta is None else np.asarray(beta, np.float64)
            weight = (held[:, None] * self.num_envs * prob) ** -beta[:, None]
            weight = weight / weight.max(1, keepdims=True)
        weight = torch.as_tensor(weight, dtype=torch.float32, device=self.device)
        return self.gather(ks, slots) | {"weight": weight}

    def _flat(self, k: np.ndarray, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Positions (k, row, env) in the flattened [K * rows * num_envs, ...] arrays."""
        return (k * self.rows + rows) * self.num_envs + envs

    @staticmethod
    def _take(x: np.ndarray, flat: np.ndarray) -> np.ndarray:
        """x [K, rows, num_envs, ...] at flat positions: one `take` (~10x faster than indexing
        by three arrays)."""
        return x.reshape((-1,) + x.shape[3:]).take(flat, axis=0)

    def _stack(self, k: np.ndarray, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """The observations at rows, envs [M, B] of members k [M, 1]: stacks rebuilt from the
        frame_stack newest frames up to each row, zeros before its episode's first obs."""
        if self.frame_stack == 1:
            return self._take(self.obs, self._flat(k, rows, envs))
        back = (rows[..., None] + np.arange(1 - self.frame_stack, 1)) % self.rows  # oldest first
        at = self._flat(k[..., None], back, envs[..., None])
        first = self._take(self.first, at)
        later = np.cumsum(first[..., ::-1], -1)[..., ::-1] - first  # first obs newer than this
        frames = self._take(self.obs, at)
        frames[later > 0] = 0
        return frames

    def gather(self, members: np.ndarray, slots: np.ndarray) -> dict[str, torch.Tensor]:
        """The transitions in slots [M, B] (row * num_envs + env) of members [M]."""
        k = np.asarray(members, np.int64)[:, None]
        rows, envs = np.divmod(slots, self.num_envs)
        at = self._flat(k, rows, envs)
        obs = self._stack(k, rows, envs)
        next_obs = self._stack(k, (rows + 1) % self.rows, envs)
        for m, b in np.argwhere(self._take(self.cut, at)):
            final = self.final[k[m, 0]][int(slots[m, b])]
            next_obs[m, b] = (
                final if self.frame_stack == 1 else np.concatenate([obs[m, b, 1:], final[None]])
            )
        batch = {
            "obs": obs,
            "action": self._take(self.actions, at),
            "reward": self._take(self.rewards, at),
            "next_obs": next_obs,
            "terminated": self._take(self.terminated, at).astype(np.float32),
        }
        batch = {key: torch.from_numpy(v).to(self.device) for key, v in batch.items()}
        return batch | {"index": torch.as_tensor(slots, dtype=torch.int64)}

    def update_priorities(
        self, members: np.ndarray, index: torch.Tensor, td_error: torch.Tensor
    ) -> None:
        """p_i = |delta_i| + priority_eps for the sampled slots [M, B] (proportional variant)."""
        ks = np.asarray(members, np.int64)
        priority = td_error.detach().abs().double().cpu().numpy() + self.priority_eps
        self.tree.set(ks, np.asarray(index), priority ** self.alpha_per[ks, None])
        self.max_priority[ks] = np.maximum(self.max_priority[ks], priority.max(1))

    def member_state(self, k: int) -> dict:
        """Member k's ring (only the rows written), position, finals, priorities, generator."""
        n = int(min(self.steps[k] + 1, self.rows))  # rows written: all of them once it wrapped
        state = {
            "rows": self.rows,
            "pos": int(self.pos[k]),
            "steps": int(self.steps[k]),
            "final": {slot: torch.from_numpy(v.copy()) for slot, v in self.final[k].items()},
            "alpha_per": float(self.alpha_per[k]),
            "max_priority": float(self.max_priority[k]),
            "generator": self.generators[k].get_state(),
        }
        for name in ("obs", "actions", "rewards", "terminated", "cut", "first"):
            state[name] = torch.from_numpy(getattr(self, name)[k, :n].copy())
        if self.tree is not None:
            leaves = self.tree.tree[k, self.tree.capacity :][: n * self.num_envs]
            state["priorities"] = torch.from_numpy(leaves.copy())
        return state

    def load_member_state(self, k: int, state: dict) -> None:
        """Restore member k's memory. The loop resets the envs on resume, so the newest step of
        each unfinished episode is marked as cut there, its next obs kept in `final`, and the
        pending row begins episodes."""
        if state["rows"] != self.rows or state["obs"].shape[1:] != self.obs.shape[2:]:
            raise ValueError(
                f"replay memory of {state['rows']} rows x {tuple(state['obs'].shape[1:])} "
                f"does not fit {self.rows} x {self.obs.shape[2:]}: memory_size or num_envs "
                "changed since the checkpoint"
            )
        self.reset_member(k, 0, state["alpha_per"])
        n = len(state["obs"])
        for name in ("obs", "actions", "rewards", "terminated", "cut", "first"):
            getattr(self, name)[k, :n] = state[name].numpy()
        self.pos[k], self.steps[k] = state["pos"], state["steps"]
        self.final[k] = {slot: v.numpy().copy() for slot, v in state["final"].items()}
        self.max_priority[k] = state["max_priority"]
        self.generators[k].set_state(state["generator"])
        if self.tree is not None:
            leaves = np.arange(n * self.num_envs)[None]
            self.tree.set(np.array([k]), leaves, state["priorities"].numpy()[None])
        if self.steps[k]:
            last, pos = (self.pos[k] - 1) % self.rows, self.pos[k]
            for env in np.flatnonzero(~(self.terminated[k, last] | self.cut[k, last])):
                self.cut[k, last, env] = True
                self.final[k][int(last) * self.num_envs + int(env)] = self.obs[k, pos, env].copy()
            self.first[k, pos] = True
