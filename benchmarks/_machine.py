"""The machine line every benchmark prints beside its figures, and the lock that keeps two
benchmarks from sharing the CPU: each benchmark's main() calls `take_machine()` first."""

import atexit
import os
import platform
import sys
from pathlib import Path

import torch
from filelock import FileLock, Timeout

LOCK = Path(os.environ.get("RLHP_BENCHMARK_LOCK", "/tmp/rlhp-benchmark.lock"))
_held: list[FileLock] = []


def machine() -> str:
    """CPUs this process may use, the CPU model, the load average now and torch's version."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    nproc, load = len(os.sched_getaffinity(0)), os.getloadavg()[0]
    return f"nproc {nproc}, {cpu}, load {load:.1f} at start, torch {torch.__version__}"


def load_average() -> str:
    """os.getloadavg(): the 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def take_machine(note: str = "") -> str:
    """Hold the benchmark lock until this process exits (waiting, and saying so, while another
    benchmark holds it); print the machine line (with `note`) and the load average now and at
    exit. Returns the machine line."""
    lock = FileLock(LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for {LOCK}: another benchmark is running", file=sys.stderr, flush=True)
        lock.acquire()
    _held.append(lock)
    where = machine()
    print(f"- machine: {where}" + (f"; {note}" if note else ""))
    print(f"- load average (1, 5, 15 min) at start: {load_average()}", flush=True)
    atexit.register(lambda: print(f"- load average (1, 5, 15 min) at end: {load_average()}"))
    return where
