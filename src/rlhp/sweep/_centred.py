"""Priors that centre the search (`hydra.sweeper.prior_spread=S`), as AutoML kits "use priors".

The random draws of a sampler (all of RandomSampler's, the startup trials of TPE and GP, the
independent ones of CMA-ES and QMC) and QMC's Sobol points come from a normal distribution
centred on the prior with standard deviation S times the range (in log space for log
dimensions), clipped to the range and rounded to its step. A categorical dimension keeps its
prior with probability 1 - S and is uniform otherwise.
"""

import math
from statistics import NormalDist
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, QMCSampler, RandomSampler
from optuna.trial import FrozenTrial

NORMAL = NormalDist()  # the standard normal (its quantiles spread the values)


def centre(dist: BaseDistribution, prior: Any, spread: float, u: float) -> Any:
    """The value at quantile u in (0, 1) of the distribution centred on `prior`."""
    if isinstance(dist, CategoricalDistribution):
        if u < 1 - spread:
            return prior
        k = min(int((u - (1 - spread)) / spread * len(dist.choices)), len(dist.choices) - 1)
        return dist.choices[k]
    log = dist.log
    f = math.log if log else float
    low, high, centre_ = f(dist.low), f(dist.high), f(prior)
    x = centre_ + spread * (high - low) * NORMAL.inv_cdf(min(max(u, 1e-9), 1 - 1e-9))
    x = min(max(x, low), high)
    x = math.exp(x) if log else x
    if dist.step is not None:
        x = dist.low + round((x - dist.low) / dist.step) * dist.step
    x = min(max(x, dist.low), dist.high)
    return int(round(x)) if isinstance(dist, IntDistribution) else float(x)


class CentredRandomSampler(BaseSampler):
    """Independent draws centred on the priors; other parameters uniform."""

    def __init__(self, prior: dict[str, Any], spread: float, seed: int | None = None) -> None:
        self.prior, self.spread = prior, spread
        self.rng = np.random.RandomState(seed)
        self.uniform = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self.rng.seed()
        self.uniform.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, dist: BaseDistribution
    ) -> Any:
        if name not in self.prior:
            return self.uniform.sample_independent(study, trial, name, dist)
        return centre(dist, self.prior[name], self.spread, self.rng.uniform())


def centred(
    sampler: BaseSampler, prior: dict[str, Any], spread: float, seed: int | None = None
) -> BaseSampler:
    """`sampler` with its random draws (and QMC's points) centred on `prior`."""
    inner = CentredRandomSampler(prior, spread, seed)
    if isinstance(sampler, RandomSampler):
        return inner
    for attr in ("_random_sampler", "_independent_sampler"):  # TPE; GP, CMA-ES, QMC
        if hasattr(sampler, attr):
            setattr(sampler, attr, inner)
    if isinstance(sampler, QMCSampler):
        sobol = sampler.sample_relative

        def sample_relative(study, trial, space):
            out = sobol(study, trial, space)
            for name, value in out.items():
                dist = space[name]
                if name in prior and isinstance(dist, FloatDistribution | IntDistribution):
                    out[name] = centre(dist, prior[name], spread, _quantile(dist, value))
            return out

        sampler.sample_relative = sample_relative
    return sampler


def _quantile(dist: FloatDistribution | IntDistribution, value: float) -> float:
    """Where `value` lies in the range, in (0, 1) (log space for log dimensions)."""
    f = math.log if dist.log else float
    span = f(dist.high) - f(dist.low)
    return (f(value) - f(dist.low)) / span if span > 0 else 0.5
