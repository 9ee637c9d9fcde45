"""Latency of ``Coordinator.report()`` by number of records, reporters and lock.

For each lock (flock, symlink) and each size (100, 1k, 10k records already in ``rungs.jsonl``,
written by trials that report rung after rung until ASHA stops them, so the snapshot is there
as in a real sweep):

  first   a new process's first report: ``Coordinator(...)`` then ``report()`` of a new trial,
          on a fresh copy of the directory each time, in a process that has done its imports
  warm 1  one process, after its first report, reports new trials one after the other
  warm 8  eight such processes report at once: in each round all eight are released together
          (a barrier) and each reports once

Each report of a new trial reaches the first rung and appends a record (fsync'd), so the warm
runs end with up to ``--reports`` more records than they started with. Figures are p50 and p99
in milliseconds per repetition; the summary gives the median and range over repetitions.

  python benchmarks/asha_latency.py [--repeat 3] [--reports 200] [--out benchmarks/asha_latency.md]
"""

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import take_machine  # noqa: E402

from rlhp.asha import Coordinator  # noqa: E402

SETTINGS = {"grace_period": 1000, "reduction_factor": 3, "max_t": 100_000}
SIZES = (100, 1_000, 10_000)
LOCKS = ("flock", "symlink")
CTX = mp.get_context("spawn")  # children of a big parent would pay copy-on-write faults


def prefill(path: Path, records: int) -> None:
    """Trials report rung after rung (random values) until stopped or at the top rung."""
    asha, rng, trial = Coordinator(path, **SETTINGS), random.Random(0), 0
    written = 0
    while written < records:
        frame = SETTINGS["grace_period"]
        while written < records:
            written += 1
            if not asha.report(f"p{trial}", frame, rng.gauss(0, 1)):
                break
            frame *= SETTINGS["reduction_factor"]
            if frame >= SETTINGS["max_t"]:
                break
        trial += 1


def first_reports(paths: list[Path], lock: str, out) -> None:
    """A new Coordinator on each fresh copy, as a new trial process makes it, and its report."""
    times = []
    for path in paths:
        start = time.perf_counter()
        Coordinator(path, **SETTINGS, lock=lock).report("new", 1000, 0.0)
        times.append(time.perf_counter() - start)
    out.put(times)


def warm_reports(path: Path, lock: str, name: str, n: int, barrier, out) -> None:
    asha, rng = Coordinator(path, **SETTINGS, lock=lock), random.Random(name)
    asha.report(f"{name}-warmup", 1000, 0.0)
    times = []
    for i in range(n):
        barrier.wait()  # all reporters report at the same moment, round after round
        start = time.perf_counter()
        asha.report(f"{name}-{i}", 1000, rng.gauss(0, 1))
        times.append(time.perf_counter() - start)
    out.put(times)


def run(target, args_list) -> list[float]:
    out = CTX.Queue()
    procs = [CTX.Process(target=target, args=(*args, out)) for args in args_list]
    for p in procs:
        p.start()
    got = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return [t for x in got for t in (x if isinstance(x, list) else [x])]


def measure(base: Path, size: int, lock: str, reports: int) -> dict[str, tuple[float, float]]:
    def fresh(name: str) -> Path:
        copy = base / name
        shutil.rmtree(copy, ignore_errors=True)
        # decisions.jsonl is only appended to: left out of the copies
        shutil.copytree(base / f"prefill-{size}", copy, ignore=shutil.ignore_patterns("dec*"))
        for file in copy.iterdir():  # written back, as files of a running sweep mostly are
            with open(file, "rb+") as f:
                os.fsync(f.fileno())
        return copy

    copies = [fresh(f"first{i}") for i in range(reports // 2)]  # each sees `size` records
    firsts = run(first_reports, [(copies, lock)])
    one = run(warm_reports, [(fresh("one"), lock, "w", reports, CTX.Barrier(1))])
    path, barrier = fresh("eight"), CTX.Barrier(8)
    eight = run(warm_reports, [(path, lock, f"w{i}", reports // 8, barrier) for i in range(8)])
    return {k: pct(v) for k, v in (("first", firsts), ("warm 1", one), ("warm 8", eight))}


def pct(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    where = take_machine()
    rows: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for size in SIZES:
            prefill(base / f"prefill-{size}", size)
        for rep in range(args.repeat):
            for lock in LOCKS:
                for size in SIZES:
                    for kind, (p50, p99) in measure(base, size, lock, args.reports).items():
                        rows.setdefault((lock, size, kind), []).append((p50, p99))
                        print(
                            f"rep {rep} {lock:7} {size:>6} {kind:6} p50 {p50:6.2f} p99 {p99:6.2f}"
                        )
    lines = [
        f"# report() latency ({date.today()})",
        "",
        f"`python benchmarks/asha_latency.py --repeat {args.repeat} --reports {args.reports}`",
        "",
        f"Machine: {where}.",
        "",
        "Milliseconds; median [min-max] over repetitions.",
        "",
        "| lock | records | reporters | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for (lock, size, kind), values in rows.items():
        p50s, p99s = zip(*values, strict=True)
        lines.append(f"| {lock} | {size:,} | {kind} | {span(p50s)} | {span(p99s)} |")
    raw = {
        " ".join(map(str, key)): [[round(x, 3) for x in v] for v in vs] for key, vs in rows.items()
    }
    lines += ["", f"Every repetition, [p50, p99] ms: `{json.dumps(raw)}`", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)


def span(values: tuple[float, ...]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


if __name__ == "__main__":
    main()
