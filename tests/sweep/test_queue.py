"""rlhp.sweep._slurm.Queue on real files: the queue between a search's controller and its
shared-GPU host jobs (its inbox twin, rlhp.inbox, is tested in tests/test_inbox.py)."""

import multiprocessing
from pathlib import Path

from rlhp.sweep._slurm import Queue

JOBS = 60


def test_jobs_are_claimed_in_number_order_and_once(tmp_path):
    queue = Queue(tmp_path)
    for number in (10, 2, 9):
        queue.put(number, {"overrides": [f"seed={number}"]})
    assert queue.pending() == 3
    got = [queue.claim("host_a"), queue.claim("host_b"), queue.claim("host_a")]
    assert got == [(n, {"overrides": [f"seed={n}"]}) for n in (2, 9, 10)]  # 10 after 9
    assert queue.claim("host_b") is None and queue.pending() == 0
    assert sorted(queue.claims("host_a")) == [2, 10] and queue.claims("host_b") == [9]


def test_a_released_job_is_claimed_again_and_a_finished_one_has_its_result(tmp_path):
    queue = Queue(tmp_path)
    queue.put(4, {"x": 1})
    number, spec = queue.claim("preempted_host")
    queue.release("preempted_host", number, spec)
    assert queue.claims("preempted_host") == [] and queue.pending() == 1
    assert queue.result(4) == (False, None)
    assert queue.claim("next_host") == (4, {"x": 1})
    queue.finish("next_host", 4, {"objective": 0.5})
    assert queue.result(4) == (True, {"objective": 0.5})
    assert queue.claims("next_host") == []


def test_close_ends_the_hosts_and_a_new_job_reopens_it(tmp_path):
    queue = Queue(tmp_path)
    queue.put(1, {})
    queue.finish("h", 1, "first run's result")
    queue.close()
    assert queue.closed()
    queue.put(1, {})  # the trial runs again (a resumed search): its old result is gone
    assert not queue.closed() and queue.result(1) == (False, None)


def _claim_all(root: Path, host: str, out) -> None:
    queue = Queue(root)
    while (got := queue.claim(host)) is not None:
        out.put((host, got[0]))
    out.put((host, None))


def test_hosts_claiming_at_once_never_take_the_same_job(tmp_path):
    queue = Queue(tmp_path)
    for number in range(JOBS):
        queue.put(number, {"n": number})
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    hosts = [ctx.Process(target=_claim_all, args=(tmp_path, f"h{i}", out)) for i in range(4)]
    for host in hosts:
        host.start()
    claimed, ended = [], 0
    while ended < len(hosts):
        host, number = out.get(timeout=60)
        if number is None:
            ended += 1
        else:
            claimed.append(number)
    for host in hosts:
        host.join(timeout=30)
    assert sorted(claimed) == list(range(JOBS))  # every job once, none twice
    held = [n for i in range(4) for n in queue.claims(f"h{i}")]
    assert sorted(held) == list(range(JOBS))
