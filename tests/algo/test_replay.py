"""The stacked replay memory: layout (each obs stored once), episode ends and rings per member,
prioritised sampling against hand-computed probabilities and weights for members with their own
alpha, member independence, checkpoint round trips, and Atari stacks rebuilt from frames stored
once, against a real ALE env's stacks."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhp.algo.replay import ReplayMemory, SumTrees


def memory(members=2, memory_size=6, num_envs=2, obs_shape=(1,), **kw) -> ReplayMemory:
    mem = ReplayMemory(
        members,
        memory_size,
        num_envs,
        obs_shape,
        torch.float32,
        (),
        torch.int64,
        torch.device("cpu"),
        **kw,
    )
    for k in range(members):
        mem.reset_member(k, seed=k)
    return mem


def fill(mem: ReplayMemory, steps: int, ends: dict | None = None, start: int = 0, members=None):
    """Step t of member k, env e: obs 1000 k + 10 t + e, action t, reward t + e / 10 + k / 100,
    next obs 1000 k + 10 (t + 1) + e. ends[(k, t, e)] = "term" | "trunc": the episode ends there;
    the next obs is then a reset obs (-1) and a cut episode's last obs is 100000 + that next obs.
    """
    ends = ends or {}
    K, ne = mem.members, mem.num_envs
    k, e = np.repeat(np.arange(K), ne), np.tile(np.arange(ne), K)
    prev_next = None
    for t in range(start, start + steps):
        obs = (1000 * k + 10 * t + e)[:, None].astype(np.float32)
        next_obs = obs + 10
        term = np.array([ends.get((ki, t, ei)) == "term" for ki, ei in zip(k, e, strict=True)])
        trunc = np.array([ends.get((ki, t, ei)) == "trunc" for ki, ei in zip(k, e, strict=True)])
        final = None
        if (term | trunc).any():
            final = next_obs.copy()
            final[term | trunc] += 100000
            next_obs[term | trunc] = -1
        if prev_next is not None:  # what the loop passes as obs is the previous next obs
            obs = prev_next
        reward = t + e / 10 + k / 100
        mem.add(obs, np.full(K * ne, t), reward, term, trunc, next_obs, final, members=members)
        prev_next = next_obs


def valid_slots(mem: ReplayMemory, k: int) -> np.ndarray:
    held = min(mem.steps[k], mem.capacity)
    rows = [(mem.pos[k] - 1 - b) % mem.rows for b in range(held)]
    return np.array(sorted(r * mem.num_envs + e for r in rows for e in range(mem.num_envs)))


def gather_member(mem: ReplayMemory, k: int) -> tuple[dict, np.ndarray]:
    """Every transition member k holds, and the env of each."""
    slots = valid_slots(mem, k)
    batch = mem.gather(np.array([k]), slots[None])
    return {key: v[0].numpy() for key, v in batch.items()}, slots % mem.num_envs


def test_sum_trees_sum_and_search_every_member_at_once():
    trees = SumTrees(2, 5)
    assert trees.capacity == 8 and trees.tree.shape == (2, 16)
    ks = np.array([0, 1])
    trees.set(ks, np.tile(np.arange(5), (2, 1)), np.array([[1, 2, 0, 3, 4], [0, 0, 5, 0, 1.0]]))
    np.testing.assert_array_equal(trees.total(ks), [10.0, 6.0])
    mass = np.array(
        [[0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99], [0, 1, 4.99, 5, 5.5, 5.99, 0, 0]]
    )
    np.testing.assert_array_equal(
        trees.find(ks, mass), [[0, 0, 1, 1, 3, 3, 4, 4], [2, 2, 2, 4, 4, 4, 2, 2]]
    )  # never leaf 2 of member 0, never a zero leaf of member 1
    trees.set(np.array([0]), np.array([[4]]), np.array([[0.0]]))
    np.testing.assert_array_equal(trees.total(ks), [6.0, 6.0])  # member 1 untouched
    assert trees.find(np.array([0]), np.array([[6.0]]))[0, 0] == 3  # the total: last non-zero
    np.testing.assert_array_equal(trees.get(np.array([1, 0]), np.array([[2], [3]])), [[5], [3]])


def test_next_obs_across_episode_ends_per_member():
    mem = memory(memory_size=20, num_envs=2)
    ends = {(0, 1, 0): "term", (0, 2, 1): "trunc", (1, 3, 1): "term", (1, 1, 0): "trunc"}
    fill(mem, 5, ends=ends)
    np.testing.assert_array_equal(mem.sizes, [10, 10])
    assert mem.obs.shape == (2, 11, 2, 1)  # each obs once: 10 transitions + the newest next obs
    for k in range(2):
        b, e = gather_member(mem, k)
        t = b["action"]
        ended = {(t_, e_): end for (k_, t_, e_), end in ends.items() if k_ == k}
        obs = 1000 * k + 10 * t + e
        after = np.array([(t_ - 1, e_) in ended for t_, e_ in zip(t, e, strict=True)])
        obs[after] = -1  # the reset obs
        np.testing.assert_array_equal(b["obs"][:, 0], obs)
        term = np.array([ended.get((t_, e_)) == "term" for t_, e_ in zip(t, e, strict=True)])
        trunc = np.array([ended.get((t_, e_)) == "trunc" for t_, e_ in zip(t, e, strict=True)])
        next_obs = 1000 * k + 10 * (t + 1) + e + np.where(trunc, 100000, 0)  # the kept last obs
        np.testing.assert_array_equal(b["next_obs"][~term, 0], next_obs[~term])
        np.testing.assert_array_equal(b["terminated"], term.astype(np.float32))
        np.testing.assert_allclose(b["reward"], t + e / 10 + k / 100, rtol=1e-6)
    assert list(mem.final[0]) == [2 * 2 + 1] and list(mem.final[1]) == [1 * 2 + 0]


def test_ring_keeps_the_newest_memory_size_frames_per_member():
    mem = memory(memory_size=6, num_envs=2)  # 3 rows of transitions + 1
    fill(mem, 7, ends={(0, 4, 1): "trunc", (0, 1, 0): "trunc", (1, 5, 0): "trunc"})
    np.testing.assert_array_equal(mem.sizes, [6, 6])
    for k, cut in ((0, (4, 1)), (1, (5, 0))):
        b, e = gather_member(mem, k)
        t = b["action"]
        assert sorted(set(t)) == [4, 5, 6]
        is_cut = (t == cut[0]) & (e == cut[1])
        next_obs = 1000 * k + 10 * (t + 1) + e + np.where(is_cut, 100000, 0)
        np.testing.assert_array_equal(b["next_obs"][:, 0], next_obs)
    assert len(mem.final[0]) == 1  # the truncation at step 1 was overwritten and forgotten
    sampled = mem.sample(np.array([0, 1]), 2000)
    for m in range(2):  # never the pending row
        assert set(sampled["index"][m].tolist()) == set(valid_slots(mem, m))
        assert set(sampled["action"][m].tolist()) == {4, 5, 6}
        obs = sampled["obs"][m, :, 0]
        assert set((obs[obs >= 0] // 1000).tolist()) == {m}  # not -1: a reset obs
    assert (sampled["weight"] == 1).all()


def test_members_reset_at_different_times_keep_their_own_positions():
    mem = memory(members=3, memory_size=12, num_envs=2)  # 6 rows of transitions + 1
    fill(mem, 3)
    mem.reset_member(1, seed=7)
    fill(mem, 2, start=3, members=np.array([0, 1]))  # member 2 idle (not active)
    np.testing.assert_array_equal(mem.pos, [5, 2, 3])
    np.testing.assert_array_equal(mem.sizes, [10, 4, 6])
    fill(mem, 4, start=5)
    np.testing.assert_array_equal(mem.pos, [2, 6, 0])
    np.testing.assert_array_equal(mem.sizes, [12, 12, 12])
    for k, steps in ((0, [3, 4, 5, 6, 7, 8]), (1, [3, 4, 5, 6, 7, 8]), (2, [1, 2, 5, 6, 7, 8])):
        b, e = gather_member(mem, k)
        t = b["action"]
        np.testing.assert_array_equal(np.unique(t), steps)
        # member 2 sat out steps 3 and 4: the obs it was next given follows its step 2
        following = np.where((k == 2) & (t == 2), 5, t + 1)
        np.testing.assert_array_equal(b["next_obs"][:, 0], 1000 * k + 10 * following + e)


def test_prioritized_probabilities_and_weights_by_hand_for_two_members():
    alpha, beta, eps = np.array([0.6, 0.9]), np.array([0.4, 0.7]), 1e-6
    mem = memory(memory_size=4, num_envs=1, prioritized=True, priority_eps=eps)
    for k in range(2):
        mem.reset_member(k, seed=10 + k, alpha_per=alpha[k])
    fill(mem, 4)
    ks = np.array([0, 1])
    slots = np.stack([valid_slots(mem, k) for k in ks])  # 4 transitions each, all priority 1
    np.testing.assert_allclose(mem.tree.get(ks, slots), 1.0)
    td = torch.tensor([[0.5, -1.0, 2.0, 4.0], [3.0, 0.1, -0.2, 1.0]])
    mem.update_priorities(ks, torch.as_tensor(slots), td)
    # by hand: p_i = |td_i| + eps, P(i) = p_i^alpha_k / sum_j p_j^alpha_k, per member
    p = np.abs(td.double().numpy()) + eps
    prob = p ** alpha[:, None] / (p ** alpha[:, None]).sum(1, keepdims=True)
    total = mem.tree.total(ks)[:, None]
    np.testing.assert_allclose(mem.tree.get(ks, slots) / total, prob, rtol=1e-12)
    counts = np.zeros((2, 4))
    # w_i = (N P(i))^-beta_k / max w, N = 4 transitions held; a batch of 64 holds every slot
    w = (4 * prob) ** -beta[:, None]
    for _ in range(200):
        b = mem.sample(ks, 64, beta)
        for m in range(2):
            idx = np.searchsorted(slots[m], b["index"][m].numpy())
            counts[m] += np.bincount(idx, minlength=4)
            want = (w[m] / w[m].max())[idx]
            np.testing.assert_allclose(b["weight"][m].numpy(), want, rtol=1e-6)
            assert set(idx) == {0, 1, 2, 3}
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), prob, atol=0.01)
    # a new transition gets its member's largest priority so far; the pending row has none
    fill(mem, 1, start=4)
    newest = (mem.pos - 1) % mem.rows
    np.testing.assert_allclose(
        mem.tree.get(ks, newest[:, None])[:, 0], [(4 + eps) ** 0.6, (3 + eps) ** 0.9]
    )
    np.testing.assert_array_equal(mem.tree.get(ks, mem.pos[:, None]), 0.0)


@pytest.mark.parametrize("prioritized", [False, True])
def test_a_members_draws_do_not_depend_on_the_other_members(prioritized):
    """Member 0 holds the same transitions in both memories; the other members differ (held,
    size, priorities, reset, sampled or not): member 0's batches are the same."""
    a, b = memory(3, 12, 2, prioritized=prioritized), memory(3, 12, 2, prioritized=prioritized)
    fill(a, 5)
    fill(b, 5, ends={(1, 2, 0): "term", (2, 1, 1): "trunc"})
    b.reset_member(2, seed=99)
    fill(b, 2, start=5, members=np.array([1, 2]))
    for _ in range(3):
        x, y = a.sample(np.array([0, 1, 2]), 16, np.ones(3)), b.sample(np.array([0, 2]), 16)
        for key in ("index", "obs", "next_obs", "action"):
            torch.testing.assert_close(x[key][0], y[key][0])
        if prioritized:
            a.update_priorities(np.array([0, 1]), x["index"][:2], x["reward"][:2])
            b.update_priorities(
                np.array([0, 2]), y["index"], torch.stack([x["reward"][0], y["reward"][1]])
            )


@pytest.mark.parametrize("steps", [3, 9])  # part full, and wrapped around the ring
def test_checkpoint_round_trip_per_member_marks_the_newest_steps_as_cut(steps):
    mem = memory(memory_size=10, num_envs=2, prioritized=True)
    fill(mem, steps, ends={(0, 1, 0): "term", (1, steps - 1, 1): "term"})
    mem.update_priorities(
        np.array([1]), torch.as_tensor(valid_slots(mem, 1)[:2])[None], torch.tensor([[3.0, 5.0]])
    )
    state = mem.member_state(1)
    if steps == 3:
        assert state["obs"].shape[0] == 4  # only the rows written so far
    restored = memory(memory_size=10, num_envs=2, prioritized=True)
    fill(restored, 2)  # slot 0 holds another member, which the load leaves alone
    before = restored.member_state(0)
    restored.load_member_state(1, state)
    for key, value in restored.member_state(0).items():
        torch.testing.assert_close(value, before[key])
    assert restored.sizes[1] == mem.sizes[1] == min(2 * steps, 10)
    slots = valid_slots(mem, 1)[None]
    ks = np.array([1])
    np.testing.assert_array_equal(restored.tree.get(ks, slots), mem.tree.get(ks, slots))
    a, b = mem.gather(ks, slots), restored.gather(ks, slots)
    for key in ("obs", "action", "reward", "next_obs", "terminated"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)
    torch.testing.assert_close(mem.sample(ks, 8), restored.sample(ks, 8))  # the same generator
    # the envs restart on resume: the newest step keeps its next obs as a cut episode
    last = (restored.pos[1] - 1) % restored.rows
    assert restored.cut[1, last, 0] and restored.terminated[1, last, 1]
    fill(restored, 1, start=100)  # the reset obs overwrites the pending row
    c = restored.gather(ks, slots)
    live = a["terminated"] == 0  # a terminal transition's next obs is never used
    np.testing.assert_array_equal(a["next_obs"][live].numpy(), c["next_obs"][live].numpy())


def test_resized_memory_refuses_a_checkpoint():
    mem = memory(memory_size=10)
    fill(mem, 2)
    with pytest.raises(ValueError, match="memory_size or num_envs changed"):
        memory(memory_size=20).load_member_state(0, mem.member_state(0))


def test_atari_frames_stored_once_rebuild_the_env_stacks():
    """Two members of two Breakout copies each (as rlhp.env.make_vec builds them, episodes cut at
    60 agent steps to get truncations beside game overs): every stack the memory rebuilds, obs and
    next obs across episode starts and ring wrap, equals the stack the env gave."""
    from ale_py.vector_env import AtariVectorEnv

    K, n, steps = 2, 2, 150
    env = AtariVectorEnv(
        "breakout",
        num_envs=K * n,
        num_threads=1,
        repeat_action_probability=0.25,
        reward_clipping=False,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        max_num_frames_per_episode=240,
    )
    mem = ReplayMemory(
        K, 2 * 40, n, (4, 84, 84), torch.uint8, (), torch.int64, torch.device("cpu"), frame_stack=4
    )
    for k in range(K):
        mem.reset_member(k, seed=k)
    obs, _ = env.reset(seed=np.arange(K * n))
    rng = np.random.default_rng(0)
    seen, ends = [], 0  # per step: (obs, next obs or the final obs of a truncation)
    for _ in range(steps):
        action = rng.integers(0, 4, K * n)
        next_obs, reward, term, trunc, info = env.step(action)
        final = info["final_obs"] if (term | trunc).any() else None
        mem.add(obs, action, reward, term, trunc, next_obs, final)
        want_next = (
            np.where((trunc & ~term)[:, None, None, None], final, next_obs)
            if final is not None
            else next_obs
        )
        seen.append((obs, want_next, term))
        ends += int((term | trunc).sum())
        obs = next_obs
    env.close()
    assert ends >= 4
    starts = 0
    for k in range(K):
        b, _ = gather_member(mem, k)
        step_of = {(mem.pos[k] - 1 - j) % mem.rows: steps - 1 - j for j in range(mem.capacity)}
        for i, slot in enumerate(valid_slots(mem, k)):
            row, copy = divmod(int(slot), n)
            want_obs, want_next, term = seen[step_of[row]]
            np.testing.assert_array_equal(b["obs"][i], want_obs[k * n + copy])
            if not term[k * n + copy]:
                np.testing.assert_array_equal(b["next_obs"][i], want_next[k * n + copy])
            starts += int(not b["obs"][i, 0].any() and b["obs"][i, 3].any())
    assert starts >= 2  # episode starts inside the rings: the zero frames were rebuilt
    assert any(mem.final)  # cut episodes: their last frame kept aside
    assert mem.obs.nbytes == K * mem.rows * n * 84 * 84  # one 84x84 frame per step
    whole = ReplayMemory(1, 2, 1, (4, 84, 84), torch.uint8, (), torch.int64, torch.device("cpu"))
    assert whole.bytes_per_frame == 4 * 84 * 84 + 8 + 4 + 3  # obs, action, reward, flags
    assert whole.bytes_per_frame / mem.bytes_per_frame > 3.9


def stacks(frames: np.ndarray, first: np.ndarray, stack: list[np.ndarray]) -> np.ndarray:
    """A frame-stacking env's observations: the newest frames, zeros before an episode's first."""
    for i, frame in enumerate(frames):
        older = np.zeros_like(stack[i][1:]) if first[i] else stack[i][1:]
        stack[i] = np.concatenate([older, frame[None]])
    return np.stack(stack)


def test_frame_stacks_survive_a_checkpoint_round_trip():
    """frame_stack = 4 on 2x2 frames: member 1's memory moves to slot 0 of a fresh memory; every
    stack it held is rebuilt as before, and the reset obs after the resume begins an episode."""
    K, n, steps = 2, 2, 9

    def new(members: int) -> ReplayMemory:
        shape, cpu = (4, 2, 2), torch.device("cpu")
        return ReplayMemory(members, 10, n, shape, torch.uint8, (), torch.int64, cpu, frame_stack=4)

    def frame(t: int) -> np.ndarray:  # copy i's frame at step t: 30 i + t + 1 everywhere
        return (
            np.full((K * n, 2, 2), t + 1, np.uint8)
            + 30 * np.arange(K * n, dtype=np.uint8)[:, None, None]
        )

    mem = new(K)
    stack = [np.zeros((4, 2, 2), np.uint8) for _ in range(K * n)]
    obs = stacks(frame(0), np.ones(K * n, bool), stack)
    ends = {(3, 2): "trunc", (5, 3): "term", (6, 2): "term"}  # (t, copy) of member 1
    for t in range(steps):
        term = np.array([ends.get((t, i)) == "term" for i in range(K * n)])
        trunc = np.array([ends.get((t, i)) == "trunc" for i in range(K * n)])
        final = stacks(frame(t + 1), np.zeros(K * n, bool), [s.copy() for s in stack])
        reset_frame = frame(t + 1) + 100 * (term | trunc)[:, None, None]
        next_obs = stacks(reset_frame, term | trunc, stack)
        mem.add(obs, np.full(K * n, t), np.zeros(K * n), term, trunc, next_obs, final)
        obs = next_obs
    held, envs = gather_member(mem, 1)
    assert (held["obs"] > 100).any() and len(mem.final[1]) == 1  # episode ends in the ring
    restored = new(1)
    restored.load_member_state(0, mem.member_state(1))
    b, _ = gather_member(restored, 0)
    live = held["terminated"] == 0  # a terminal transition's next obs is never used
    np.testing.assert_array_equal(b["obs"], held["obs"])
    np.testing.assert_array_equal(b["next_obs"][live], held["next_obs"][live])
    reset = stacks(frame(50)[2:], np.ones(n, bool), stack[2:])  # the loop resets the envs
    no = np.zeros(n, bool)
    restored.add(reset, np.full(n, 50), np.zeros(n), no, no, reset, None)
    c, c_envs = gather_member(restored, 0)
    np.testing.assert_array_equal(c["obs"][c["action"] == 50], reset)  # zeros, then the frame
    before = {
        (t, e): x
        for t, e, x, ok in zip(held["action"], envs, held["next_obs"], live, strict=True)
        if ok
    }
    after = {(t, e): x for t, e, x in zip(c["action"], c_envs, c["next_obs"], strict=True)}
    for key in before.keys() & after.keys():  # the newest steps' next obs kept aside
        np.testing.assert_array_equal(after[key], before[key])
    assert (steps - 1, 0) in after.keys() & before.keys()
