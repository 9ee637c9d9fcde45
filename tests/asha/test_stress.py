import json
import multiprocessing as mp
import os
import random
import signal
import time
import warnings
from bisect import bisect_right

import pytest

from rlhp.asha import Coordinator
from rlhp.asha._lock import LOCKS, SymlinkLock
from rlhp.asha._rule import cutoff, decide, milestones, reached

SETTINGS = {"grace_period": 5, "reduction_factor": 2, "max_t": 200}
RUNGS = [5, 10, 20, 40, 80, 160]  # 5 * 2**k below 200, written out by hand
CTX = mp.get_context("fork")  # children run the target in memory: no test-module import


def worker(path, lock, name, trials, steps, out):
    """Report random values for interleaved trials; write every (trial, frame, decision)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asha = Coordinator(path, **SETTINGS, lock=lock)
        result = report_all(asha, random.Random(name), name, trials, steps)
    result["warnings"] = [str(w.message) for w in caught]
    with open(out, "w") as f:
        json.dump(result, f)


def report_all(asha, rng, name, trials, steps):
    frames = dict.fromkeys((f"{name}-{i}" for i in range(trials)), 0)
    reports = []
    for _ in range(steps):
        for trial in [t for t in frames if frames[t] is not None]:
            frames[trial] += rng.randint(1, 3)
            go = asha.report(trial, frames[trial], rng.gauss(frames[trial], 10.0))
            reports.append((trial, frames[trial], go))
            if not go:
                frames[trial] = None
    # Requeued trials repeat their last report and must get the same answer.
    last = {trial: (frame, go) for trial, frame, go in reports}
    repeats = [(t, f, asha.report(t, f, rng.random()), go) for t, (f, go) in last.items()]
    return {"reports": reports, "repeats": repeats}


def run_workers(path, lock, tmp_path, n, trials, steps):
    outs = [tmp_path / f"out-{i}.json" for i in range(n)]
    procs = [
        CTX.Process(target=worker, args=(path, lock, f"w{i}", trials, steps, outs[i]))
        for i in range(n)
    ]
    for p in procs:
        p.start()
    return procs, outs


def join_all(procs, timeout):
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, f"{len(alive)} workers did not finish in {timeout} s"
    assert [p.exitcode for p in procs] == [0] * len(procs)


def expected_records(outs, torn):
    """(trial, rung) pairs the workers reached, and where each stopped trial stopped."""
    reached_pairs, stops = set(), {}
    for out in outs:
        result = json.loads(out.read_text())
        caught = [w for w in result["warnings"] if "broke the lock" not in w]
        assert len(caught) == torn
        assert all("torn line" in w for w in caught)
        for trial, frame, go in result["reports"]:
            i = bisect_right(RUNGS, frame)
            if i:
                reached_pairs.add((trial, RUNGS[i - 1]))
            if not go:
                stops[trial] = RUNGS[i - 1]
        for trial, _frame, go, first in result["repeats"]:
            assert go == first, trial
    return reached_pairs, stops


def replay(path):
    """Serial replay of the decision log, in arrival order, through the pure rule."""
    rungs, last, stopped = {}, {}, set()
    trial_rungs = milestones(**SETTINGS)
    for line in (path / "decisions.jsonl").read_text().splitlines():
        entry = json.loads(line)
        trial, rung = entry["trial"], entry["rung"]
        assert trial not in stopped
        assert entry["bracket"] == 0
        assert reached(entry["frame"], trial_rungs, last.get(trial)) == rung
        recorded = rungs.setdefault((0, rung), {})
        cut = cutoff(recorded.values(), SETTINGS["reduction_factor"])
        assert entry["cutoff"] == cut
        assert entry["decision"] == ("continue" if decide(entry["value"], cut) else "stop")
        recorded[trial] = entry["value"]
        last[trial] = rung
        if entry["decision"] == "stop":
            stopped.add(trial)
    return rungs


def parse(line):
    try:
        return json.loads(line)
    except ValueError:
        return None


def check(path, lock, outs, torn=0):
    reached_pairs, stops = expected_records(outs, torn)
    records = [parse(line) for line in (path / "rungs.jsonl").read_text().splitlines()]
    assert records.count(None) == torn
    records = [r for r in records if r is not None]
    assert len(records) == len(reached_pairs)
    assert {(r["trial"], r["rung"]) for r in records} == reached_pairs
    asha = Coordinator(path, **SETTINGS, lock=lock)  # from the snapshot, if any, and the tail
    assert asha.rungs() == replay(path)
    assert {trial: asha.stopped_at(trial) for trial in stops} == stops
    assert 0 < len(stops) < len({trial for trial, _ in reached_pairs})


@pytest.mark.parametrize("lock", list(LOCKS))
def test_concurrent_reports_match_a_serial_replay(tmp_path, lock):
    path = tmp_path / "asha"
    procs, outs = run_workers(path, lock, tmp_path, n=32, trials=12, steps=80)
    join_all(procs, timeout=120)
    reports = sum(len(json.loads(out.read_text())["reports"]) for out in outs)
    assert reports > 3000
    assert (path / "rungs.snapshot.json").exists()  # new processes started from snapshots
    check(path, lock, outs)


def hold_lock_and_die_mid_write(path, lock, ready):
    LOCKS[lock](path / LOCKS[lock].filename).__enter__()
    with open(path / "rungs.jsonl", "ab") as f:
        f.write(b'{"bracket": 0, "rung": 4, "tr')
    ready.set()
    time.sleep(600)


@pytest.mark.parametrize("lock", list(LOCKS))
def test_workers_proceed_after_the_lock_holder_is_killed(tmp_path, lock, monkeypatch):
    # the OS releases a dead holder's flock; a symlink lock is broken once it is stale
    monkeypatch.setattr(SymlinkLock, "stale_after", 3.0)  # the forked workers inherit it
    path = tmp_path / "asha"
    path.mkdir()
    ready = CTX.Event()
    holder = CTX.Process(target=hold_lock_and_die_mid_write, args=(path, lock, ready))
    holder.start()
    assert ready.wait(30)
    procs, outs = run_workers(path, lock, tmp_path, n=8, trials=2, steps=10)
    time.sleep(1.0)
    assert all(p.is_alive() for p in procs)  # all blocked on the lock
    assert not (path / "decisions.jsonl").exists()
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    join_all(procs, timeout=30)
    with pytest.warns(UserWarning, match="torn line"):
        check(path, lock, outs, torn=1)
