"""Distributed Grid Descent (Loynd et al., "Working Memory Graphs", ICML 2020, Appendix B).

Over a grid of ordered values (each dimension's values in the order the space lists them): take
the configuration whose run set (all its runs) has the best mean, and its neighbourhood (the
configurations one step away in exactly one dimension); weight each by max(0, M - runs) with
M = |neighbourhood| + 1; draw one and run it. Configurations are re-run, so their means sharpen,
and the best can move only to a neighbour that proved better on average.

Everything is read from the study at each draw, so trial slots ask while others run (a running
trial counts as a run of its configuration), several nodes can share one study, and a resumed
search continues where it was. Before any run completed, the search starts at the prior trial
(enqueued by the sweeper) or, without one, at a random grid point. When every candidate already
has M runs, the candidates with the fewest runs are drawn uniformly (the paper leaves this open).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import FrozenTrial, TrialState

Point = tuple[int, ...]


def neighbours(point: Point, sizes: Sequence[int]) -> list[Point]:
    """The grid points one step away from `point` in exactly one dimension."""
    out = []
    for d, i in enumerate(point):
        for j in (i - 1, i + 1):
            if 0 <= j < sizes[d]:
                out.append(point[:d] + (j,) + point[d + 1 :])
    return out


def weights(
    best: Point, sizes: Sequence[int], runs: dict[Point, int]
) -> tuple[list[Point], list[int]]:
    """DGD's candidates (the best point, then its neighbourhood) and their weights."""
    candidates = [best, *neighbours(best, sizes)]
    m = len(candidates)
    return candidates, [max(0, m - runs.get(c, 0)) for c in candidates]


def choose(
    scores: dict[Point, list[float]],
    running: dict[Point, int],
    sizes: Sequence[int],
    maximize: bool,
    rng: np.random.RandomState,
) -> Point:
    """The next point given each point's completed scores and its running trials (a pure rule)."""
    if not scores:
        return tuple(int(rng.randint(n)) for n in sizes)
    sign = 1.0 if maximize else -1.0
    best = max(scores, key=lambda p: (sign * float(np.mean(scores[p])), len(scores[p])))
    runs = {p: len(v) for p, v in scores.items()}
    for p, n in running.items():
        runs[p] = runs.get(p, 0) + n
    candidates, w = weights(best, sizes, runs)
    if sum(w) == 0:
        fewest = min(runs.get(c, 0) for c in candidates)
        w = [int(runs.get(c, 0) == fewest) for c in candidates]
    p = np.asarray(w, float) / sum(w)
    return candidates[int(rng.choice(len(candidates), p=p))]


class DGDSampler(BaseSampler):
    """`hydra/sweeper/sampler=dgd`: the sweeper hands it the grid (each dimension's ordered
    values) as GridSampler gets its search space."""

    def __init__(self, grid: dict[str, list[Any]], seed: int | None = None) -> None:
        self.grid = grid
        self.names = list(grid)
        self.sizes = [len(grid[n]) for n in self.names]
        self.rng = np.random.RandomState(seed)
        self.fallback = RandomSampler(seed=seed)
        self.drawn: dict[int, dict[str, Any]] = {}  # trial id -> its configuration

    def reseed_rng(self) -> None:
        self.rng.seed()
        self.fallback.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}  # one whole configuration is drawn in before_trial

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def _point(self, trial: FrozenTrial) -> Point | None:
        try:
            return tuple(self.grid[n].index(trial.params[n]) for n in self.names)
        except (KeyError, ValueError):
            return None

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs:  # an enqueued trial (the prior) runs as given
            return
        scores: dict[Point, list[float]] = {}
        running: dict[Point, int] = {}
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if t.number == trial.number or (point := self._point(t)) is None:
                continue
            if t.state == TrialState.COMPLETE and t.value is not None and t.value == t.value:
                scores.setdefault(point, []).append(t.value)
            elif t.state == TrialState.RUNNING:
                running[point] = running.get(point, 0) + 1
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        point = choose(scores, running, self.sizes, maximize, self.rng)
        params = {n: self.grid[n][i] for n, i in zip(self.names, point, strict=True)}
        self.drawn[trial._trial_id] = params

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        params = self.drawn.get(trial._trial_id, {})
        if param_name in params:
            return params[param_name]
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)
