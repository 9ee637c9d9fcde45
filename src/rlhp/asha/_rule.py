"""Pure decision rule of asynchronous successive halving (Ray Tune's ``AsyncHyperBandScheduler``).

Values are kept in the caller's units; ``mode="min"`` is handled like Ray, by negating them.
"""

import hashlib
import math
from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate

import numpy as np

MODES = ("max", "min")


def milestones(grace_period: int, reduction_factor: int, max_t: int, s: int = 0) -> list[int]:
    """Rung milestones ``grace_period * reduction_factor**(k + s)`` strictly below ``max_t``."""
    out = []
    milestone = grace_period * reduction_factor**s
    while milestone < max_t:
        out.append(milestone)
        milestone *= reduction_factor
    return out


def bracket_of(trial: str, sizes: list[int]) -> int:
    """Bracket of ``trial``: Ray's softmax over rung counts, drawn from a stable hash of the id.

    Ray draws at random; hashing keeps a requeued trial in the same bracket in every process.
    """
    weights = [math.exp(size - max(sizes)) for size in sizes]
    digest = hashlib.sha256(trial.encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64 * sum(weights)
    return min(bisect_right(list(accumulate(weights)), u), len(sizes) - 1)


def reached(frame: int, rungs: list[int], last: int | None = None) -> int | None:
    """Highest milestone of ``rungs`` (ascending) at or below ``frame``, if above ``last``.

    ``last`` is the highest rung already recorded for the trial: rungs at or below it are decided,
    so a repeated report is answered from the records and rungs skipped by a jump are never
    back-filled (Ray's default back-fills them on later reports, which breaks idempotency).
    """
    i = bisect_right(rungs, frame)
    if i == 0 or (last is not None and rungs[i - 1] <= last):
        return None
    return rungs[i - 1]


def cutoff(values: Iterable[float], reduction_factor: int, mode: str = "max") -> float | None:
    """The ``1 - 1/reduction_factor`` percentile of the values recorded at a rung (NaNs ignored).

    None when the rung holds no value that is not NaN.
    """
    sign = 1.0 if mode == "max" else -1.0
    recorded = sign * np.asarray(list(values), dtype=float)
    if np.isnan(recorded).all():
        return None
    q = (1 - 1 / reduction_factor) * 100
    return sign * float(np.nanpercentile(recorded, q, method="linear"))


def decide(value: float, cut: float | None, mode: str = "max") -> bool:
    """True (continue) unless ``value`` is strictly worse than ``cut``.

    A NaN ``value`` compares false, so it is the worst value: it stops wherever there is a cutoff.
    """
    if cut is None:
        return True
    return value >= cut if mode == "max" else value <= cut
