"""The replay memory: layout (each obs stored once), episode ends, the ring, prioritised
sampling against hand-computed probabilities and weights, and checkpoint round trips."""

import numpy as np
import pytest
import torch

from rlhp.algo.replay import ReplayMemory, SumTree


def memory(memory_size=6, num_envs=2, obs_shape=(1,), **kw) -> ReplayMemory:
    return ReplayMemory(
        memory_size, num_envs, obs_shape, torch.float32, (), torch.int64, torch.device("cpu"), **kw
    )


def fill(mem: ReplayMemory, steps: int, ends: dict | None = None, start: int = 0) -> None:
    """Step t: obs[e] = 10 t + e, action t, reward t + e / 10, next obs 10 (t + 1) + e.
    ends[(t, e)] = "term" | "trunc": the episode ends there; the next obs is then a reset obs
    (-1) and a truncated episode's last obs is 1000 + 10 t + e."""
    ends = ends or {}
    ne = mem.num_envs
    prev_next = None
    for t in range(start, start + steps):
        obs = np.array([[10 * t + e] for e in range(ne)], np.float32)
        next_obs = obs + 10
        term = np.array([ends.get((t, e)) == "term" for e in range(ne)])
        trunc = np.array([ends.get((t, e)) == "trunc" for e in range(ne)])
        final = None
        if (term | trunc).any():
            final = next_obs.copy()
            for e in np.flatnonzero(term | trunc):
                final[e] = 1000 + 10 * t + e
                next_obs[e] = -1
        if prev_next is not None:  # what the loop passes as obs is the previous next obs
            obs = prev_next
        mem.add(obs, np.full(ne, t), np.arange(ne) / 10 + t, term, trunc, next_obs, final)
        prev_next = next_obs


def valid_slots(mem: ReplayMemory) -> list[int]:
    rows = [(mem.pos - 1 - k) % mem.rows for k in range(mem.size)]
    return sorted(r * mem.num_envs + e for r in rows for e in range(mem.num_envs))


def test_sum_tree_sums_and_prefix_search():
    tree = SumTree(5)
    assert tree.capacity == 8
    tree.set(np.arange(5), np.array([1.0, 2.0, 0.0, 3.0, 4.0]))
    assert tree.total == 10.0
    mass = np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0, 9.99])
    np.testing.assert_array_equal(tree.find(mass), [0, 0, 1, 1, 3, 3, 4, 4])  # never leaf 2
    tree.set(np.array([4]), np.array([0.0]))
    assert tree.total == 6.0
    assert tree.find(np.array([6.0]))[0] == 3  # mass at the total lands on the last non-zero
    np.testing.assert_array_equal(tree.get(np.arange(5)), [1, 2, 0, 3, 0])


def test_next_obs_across_episode_ends():
    mem = memory(memory_size=20, num_envs=2)
    fill(mem, 5, ends={(1, 0): "term", (2, 1): "trunc"})
    assert len(mem) == 10
    assert mem.obs.shape == (11, 2, 1)  # each obs once: 10 transitions + the newest next obs
    b = mem.gather(np.array(valid_slots(mem)))
    t, e = b["action"].numpy(), np.array(valid_slots(mem)) % 2
    expected_obs = 10 * t + e
    expected_obs[((t == 2) & (e == 0)) | ((t == 3) & (e == 1))] = -1  # the reset obs
    np.testing.assert_array_equal(b["obs"][:, 0].numpy(), expected_obs)
    expected_next = 10 * (t + 1) + e
    expected_next[(t == 2) & (e == 1)] = 1000 + 10 * 2 + 1  # truncated: the kept last obs
    term = (t == 1) & (e == 0)
    np.testing.assert_array_equal(b["next_obs"][~term, 0].numpy(), expected_next[~term])
    np.testing.assert_array_equal(b["terminated"].numpy(), term.astype(np.float32))
    np.testing.assert_allclose(b["reward"].numpy(), t + e / 10)
    assert list(mem.final) == [2 * 2 + 1]  # slot of (t=2, e=1): only cut episodes keep one


def test_ring_keeps_the_newest_memory_size_frames():
    mem = memory(memory_size=6, num_envs=2)  # 3 rows of transitions + 1
    fill(mem, 7, ends={(4, 1): "trunc", (1, 0): "trunc"})
    assert len(mem) == 6
    b = mem.gather(np.array(valid_slots(mem)))
    t, e = b["action"].numpy(), np.array(valid_slots(mem)) % 2
    assert sorted(set(t)) == [4, 5, 6]
    expected_next = np.where((t == 4) & (e == 1), 1041, 10 * (t + 1) + e)
    np.testing.assert_array_equal(b["next_obs"][:, 0].numpy(), expected_next)
    assert len(mem.final) == 1  # the truncation at step 1 was overwritten and forgotten
    np.random.seed(0)
    sampled = mem.sample(2000)
    assert set(sampled["index"].tolist()) == set(valid_slots(mem))  # never the pending row
    assert set(sampled["action"].tolist()) == {4, 5, 6}
    assert (sampled["weight"] == 1).all()


def test_prioritized_probabilities_and_weights_by_hand():
    alpha, beta, eps = 0.6, 0.4, 1e-6
    mem = memory(memory_size=4, num_envs=1, prioritized=True, alpha_per=alpha, priority_eps=eps)
    fill(mem, 4)
    slots = np.array(valid_slots(mem))  # 4 transitions, all priority 1 so far
    np.testing.assert_allclose(mem.tree.get(slots), 1.0)
    td = np.array([0.5, -1.0, 2.0, 4.0])
    mem.update_priorities(slots, td)
    # by hand: p_i = |td_i| + eps, P(i) = p_i^alpha / sum_k p_k^alpha
    p = np.abs(td) + eps
    prob = p**alpha / (p**alpha).sum()
    np.testing.assert_allclose(mem.tree.get(slots) / mem.tree.total, prob, rtol=1e-12)
    # sampling frequencies match P(i)
    np.random.seed(1)
    counts = np.zeros(len(slots))
    for _ in range(200):
        b = mem.sample(64, beta)
        idx = np.searchsorted(slots, b["index"].numpy())
        counts += np.bincount(idx, minlength=len(slots))
        # w_i = (N P(i))^-beta / max w, N = 4 transitions held; a batch of 64 holds every slot
        # (normalised by the batch's max weight, N cancels: w_i = (P(i) / min_batch P)^-beta)
        w = (4 * prob) ** -beta
        np.testing.assert_allclose(b["weight"].numpy(), (w / w.max())[idx], rtol=1e-6)
        assert set(idx) == {0, 1, 2, 3}
    np.testing.assert_allclose(counts / counts.sum(), prob, atol=0.01)
    # a new transition gets the largest priority seen so far; the pending row has none
    fill(mem, 1, start=4)
    newest = (mem.pos - 1) % mem.rows
    assert mem.tree.get(np.array([newest]))[0] == pytest.approx((4.0 + eps) ** alpha)
    assert mem.tree.get(np.array([mem.pos]))[0] == 0.0


def test_checkpoint_round_trip_marks_the_newest_steps_as_cut():
    for steps in (3, 9):  # part full, and wrapped around the ring
        mem = memory(memory_size=10, num_envs=2, prioritized=True)
        fill(mem, steps, ends={(1, 0): "term"})
        mem.update_priorities(np.array(valid_slots(mem))[:2], np.array([3.0, 5.0]))
        state = mem.state_dict()
        if steps == 3:
            assert state["obs"].shape[0] == 4  # only the rows written so far
        restored = memory(memory_size=10, num_envs=2, prioritized=True)
        restored.load_state_dict(state)
        assert len(restored) == len(mem) == min(2 * steps, 10)
        slots = np.array(valid_slots(mem))
        np.testing.assert_array_equal(restored.tree.get(slots), mem.tree.get(slots))
        a, b = mem.gather(slots), restored.gather(slots)
        for key in ("obs", "action", "reward", "next_obs", "terminated"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)
        # the envs restart on resume: the newest step keeps its next obs as a cut episode
        last = (restored.pos - 1) % restored.rows
        assert restored.cut[last].all()
        fill(restored, 1, start=100)  # the reset obs overwrites the pending row
        c = restored.gather(slots)
        np.testing.assert_array_equal(a["next_obs"].numpy(), c["next_obs"].numpy())


def test_resized_memory_refuses_a_checkpoint():
    mem = memory(memory_size=10)
    fill(mem, 2)
    with pytest.raises(ValueError, match="memory_size or num_envs changed"):
        memory(memory_size=20).load_state_dict(mem.state_dict())


def test_atari_frames_stay_uint8():
    mem = ReplayMemory(
        64, 4, (4, 84, 84), torch.uint8, (), torch.int64, torch.device("cpu"), prioritized=True
    )
    obs = np.random.randint(0, 256, (4, 4, 84, 84), dtype=np.uint8)
    zeros = np.zeros(4, bool)
    mem.add(obs, np.zeros(4), np.zeros(4), zeros, zeros, obs[::-1].copy(), None)
    assert mem.obs.dtype == torch.uint8
    assert mem.obs.nbytes == (64 // 4 + 1) * 4 * 4 * 84 * 84  # one stack per frame (+ a row)
    b = mem.sample(8)
    assert b["obs"].dtype == torch.uint8 and b["next_obs"].dtype == torch.uint8
    np.testing.assert_array_equal(b["next_obs"].numpy(), obs[::-1][b["index"].numpy() % 4])
