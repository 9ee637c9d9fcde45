"""Best-history, as rl_nexus's eval_hp_search: after each completed run, the configuration with
the best estimated score (the mean over all its runs, so a re-run configuration is judged by
every run it has), how many runs it has, and for how many runs it has been the best."""

from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState


@dataclass(frozen=True)
class Step:
    run: int  # completed runs so far
    trial: int  # the run that just completed
    value: float  # its score
    best: int  # the best configuration, named by its first trial's number
    params: dict[str, Any]
    runs: int  # runs of the best configuration
    estimate: float  # mean score over those runs
    held: int  # completed runs since this configuration became the best (1: it just did)


def config_key(params: dict[str, Any]) -> str:
    return repr(sorted(params.items()))


def best_history(trials: list[FrozenTrial], maximize: bool) -> list[Step]:
    """One Step per complete trial, in completion order."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value == t.value]
    done.sort(key=lambda t: (t.datetime_complete or t.datetime_start, t.number))
    scores: dict[str, list[float]] = {}
    first: dict[str, FrozenTrial] = {}
    sign = 1.0 if maximize else -1.0
    steps: list[Step] = []
    for i, t in enumerate(done, start=1):
        key = config_key(t.params)
        scores.setdefault(key, []).append(t.value)
        first.setdefault(key, t)
        best = max(scores, key=lambda k: (sign * sum(scores[k]) / len(scores[k]), -first[k].number))
        held = steps[-1].held + 1 if steps and steps[-1].best == first[best].number else 1
        steps.append(
            Step(
                run=i,
                trial=t.number,
                value=t.value,
                best=first[best].number,
                params=first[best].params,
                runs=len(scores[best]),
                estimate=sum(scores[best]) / len(scores[best]),
                held=held,
            )
        )
    return steps
