"""The machine line every benchmark prints beside its figures."""

import os
import platform
from pathlib import Path

import torch


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
