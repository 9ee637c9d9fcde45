"""Experience replay shared by the off-policy agents (DQN, SAC): uniform, or prioritised by TD
error with a sum tree (Schaul et al. 2016).

The memory is sized in frames (one transition per env step of each vector env) and laid out
as a ring of rows, one row per vector step with a column per env. Each observation is stored
once: the next observation of row t is row t+1 of the same column, except where the episode
ended at t. A terminal transition needs no next observation (its target is masked); the last
observation of an episode cut by a time limit is kept aside in `final`. So an Atari memory
holds memory_size + num_envs uint8 frame stacks of 4x84x84 = 28,224 bytes: about 2.8 GB per
100k frames, 28 GB per 1M, in RAM and in each checkpoint.

Storage is torch tensors on the CPU (torch.save writes them without pickle's 4 GB limit);
batches go to the agent's device. Sampling draws from numpy's global generator, which the loop
seeds and checkpoints.
"""

import numpy as np
import torch


class SumTree:
    """A complete binary tree over `capacity` leaves (priorities); each node holds the sum of
    its children, so the root is the total and a prefix-sum search takes log2(capacity) steps.
    All operations take arrays of leaves."""

    def __init__(self, capacity: int):
        self.capacity = 1 << max(capacity - 1, 0).bit_length()  # leaves, a power of two
        self.tree = np.zeros(2 * self.capacity)  # node 1 is the root, leaf i is node capacity+i

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, leaves: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(leaves) + self.capacity]

    def set(self, leaves: np.ndarray, values: np.ndarray) -> None:
        nodes = np.asarray(leaves, dtype=np.int64) + self.capacity
        self.tree[nodes] = values
        nodes = np.unique(nodes // 2)
        while nodes[0] >= 1:  # every leaf has the same depth: one level at a time up to the root
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]
            nodes = np.unique(nodes // 2)

    def find(self, mass: np.ndarray) -> np.ndarray:
        """The leaf i for each mass m with sum(p[:i]) <= m < sum(p[:i+1]), never a zero leaf."""
        mass = np.asarray(mass, dtype=np.float64).copy()
        nodes = np.ones(len(mass), dtype=np.int64)
        while nodes[0] < self.capacity:
            left = 2 * nodes
            # rounding can leave m just above a subtree's sum: never descend into a zero subtree
            right = (mass >= self.tree[left]) & (self.tree[left + 1] > 0)
            mass = np.where(right, mass - self.tree[left], mass)
            nodes = np.where(right, left + 1, left)
        return nodes - self.capacity


class ReplayMemory:
    """A ring of transitions (obs, action, reward, next obs, terminated), `memory_size` frames.

    `add` stores one vector step; `sample` returns a batch dict of tensors on `device` with
    `index` (flat slots, for `update_priorities`) and `weight` (importance-sampling weights,
    all 1 when uniform).
    """

    def __init__(
        self,
        memory_size: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: torch.dtype,
        action_shape: tuple[int, ...],
        action_dtype: torch.dtype,
        device: torch.device,
        prioritized: bool = False,
        alpha_per: float = 0.6,
        priority_eps: float = 1e-6,
    ):
        self.num_envs, self.device = num_envs, device
        self.rows = max(memory_size // num_envs, 1) + 1  # + the row with the newest next obs
        shape = (self.rows, num_envs)
        self.obs = torch.zeros(shape + tuple(obs_shape), dtype=obs_dtype)
        self.actions = torch.zeros(shape + tuple(action_shape), dtype=action_dtype)
        self.rewards = torch.zeros(shape)
        self.terminated = torch.zeros(shape, dtype=torch.bool)
        self.cut = torch.zeros(shape, dtype=torch.bool)  # truncated: next obs is in self.final
        self.final: dict[int, torch.Tensor] = {}  # flat slot -> last obs of a cut episode
        self.pos = 0  # the row the next step goes to; it holds the newest next obs
        self.size = 0  # rows holding whole transitions (at most rows - 1)
        self.alpha_per, self.priority_eps = alpha_per, priority_eps
        self.tree = SumTree(self.rows * num_envs) if prioritized else None
        self.max_priority = 1.0  # new transitions get the largest priority seen so far

    def __len__(self) -> int:
        """Transitions held (frames)."""
        return self.size * self.num_envs

    def _slots(self, row: int) -> np.ndarray:
        return row * self.num_envs + np.arange(self.num_envs)

    def _forget(self, row: int) -> None:
        for slot in self._slots(row):
            self.final.pop(int(slot), None)

    def add(self, obs, action, reward, terminated, truncated, next_obs, final_obs) -> None:
        """One vector step: arrays with a leading num_envs axis, as the loop passes them."""
        p, q = self.pos, (self.pos + 1) % self.rows
        terminated = np.asarray(terminated, dtype=bool)
        cut = np.asarray(truncated, dtype=bool) & ~terminated
        self.obs[p] = torch.as_tensor(obs, dtype=self.obs.dtype)
        self.actions[p] = torch.as_tensor(action, dtype=self.actions.dtype)
        self.rewards[p] = torch.as_tensor(reward, dtype=torch.float32)
        self.terminated[p] = torch.as_tensor(terminated)
        self.cut[p] = torch.as_tensor(cut)
        self._forget(p)
        for env in np.flatnonzero(cut):
            self.final[p * self.num_envs + int(env)] = torch.as_tensor(
                final_obs[env], dtype=self.obs.dtype
            ).clone()
        self._forget(q)  # row q's old transition is gone once its obs is overwritten
        self.obs[q] = torch.as_tensor(next_obs, dtype=self.obs.dtype)
        self.pos, self.size = q, min(self.size + 1, self.rows - 1)
        if self.tree is not None:
            self.tree.set(self._slots(p), np.full(self.num_envs, self.max_priority**self.alpha_per))
            self.tree.set(self._slots(q), np.zeros(self.num_envs))

    def sample(self, batch_size: int, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """A batch of transitions: uniform, or with P(i) = p_i^alpha / sum_k p_k^alpha
        (stratified over batch_size equal slices of the total) and importance-sampling weights
        w_i = (N P(i))^-beta / max_batch w, N the number of transitions held."""
        if self.size == 0:
            raise ValueError("sample from an empty replay memory")
        if self.tree is None:
            back = np.random.randint(self.size, size=batch_size)  # rows back from the newest
            rows = (self.pos - 1 - back) % self.rows
            slots = rows * self.num_envs + np.random.randint(self.num_envs, size=batch_size)
            weight = np.ones(batch_size)
        else:
            total = self.tree.total
            mass = (np.arange(batch_size) + np.random.uniform(size=batch_size)) * (
                total / batch_size
            )
            slots = self.tree.find(np.minimum(mass, np.nextafter(total, 0)))
            prob = self.tree.get(slots) / total
            weight = (len(self) * prob) ** -beta
            weight = weight / weight.max()
        weight = torch.as_tensor(weight, dtype=torch.float32, device=self.device)
        return self.gather(slots) | {"weight": weight}

    def gather(self, slots: np.ndarray) -> dict[str, torch.Tensor]:
        """The transitions in flat slots (row * num_envs + env), on the agent's device."""
        slots = np.asarray(slots, dtype=np.int64)
        rows, envs = torch.as_tensor(slots // self.num_envs), torch.as_tensor(slots % self.num_envs)
        next_obs = self.obs[(rows + 1) % self.rows, envs]
        for i in torch.nonzero(self.cut[rows, envs]).flatten().tolist():
            next_obs[i] = self.final[int(slots[i])]
        batch = {
            "obs": self.obs[rows, envs],
            "action": self.actions[rows, envs],
            "reward": self.rewards[rows, envs],
            "next_obs": next_obs,
            "terminated": self.terminated[rows, envs].float(),
        }
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        return batch | {"index": torch.as_tensor(slots)}

    def update_priorities(self, slots: np.ndarray, td_error: np.ndarray) -> None:
        """p_i = |delta_i| + priority_eps for the sampled slots (proportional variant)."""
        priority = np.abs(np.asarray(td_error, dtype=np.float64)) + self.priority_eps
        self.tree.set(np.asarray(slots), priority**self.alpha_per)
        self.max_priority = max(self.max_priority, float(priority.max()))

    def state_dict(self) -> dict:
        n = self.size + 1  # rows written so far (all of them once the ring is full)
        keep = (lambda x: x) if n == self.rows else (lambda x: x[:n].clone())
        state = {
            "rows": self.rows,
            "pos": self.pos,
            "size": self.size,
            "obs": keep(self.obs),
            "actions": keep(self.actions),
            "rewards": keep(self.rewards),
            "terminated": keep(self.terminated),
            "cut": keep(self.cut),
            "final": self.final,
            "max_priority": self.max_priority,
        }
        if self.tree is not None:
            state["priorities"] = self.tree.get(np.arange(n * self.num_envs))
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved memory. The loop resets the envs on resume, so the newest step of
        each unfinished episode is marked as cut there, with its next obs kept in `final`."""
        if state["rows"] != self.rows or state["obs"].shape[1:] != self.obs.shape[1:]:
            raise ValueError(
                f"replay memory of {state['rows']} rows x {tuple(state['obs'].shape[1:])} "
                f"does not fit {self.rows} x {tuple(self.obs.shape[1:])}: memory_size or "
                "num_envs changed since the checkpoint"
            )
        n = state["size"] + 1
        for name in ("obs", "actions", "rewards", "terminated", "cut"):
            getattr(self, name)[:n] = state[name]
        self.pos, self.size = state["pos"], state["size"]
        self.final = dict(state["final"])
        self.max_priority = state["max_priority"]
        if self.tree is not None:
            self.tree.tree[:] = 0
            self.tree.set(np.arange(n * self.num_envs), state["priorities"])
        if self.size:
            last = (self.pos - 1) % self.rows
            for env in np.flatnonzero(~(self.terminated[last] | self.cut[last]).numpy()):
                self.cut[last, env] = True
                self.final[last * self.num_envs + int(env)] = self.obs[self.pos, env].clone()
