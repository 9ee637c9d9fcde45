"""Which searched parameters mattered: importance.yaml (Optuna's importance evaluators)."""

import math
import warnings
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from rlhp.analysis.export import TOP, plain
from rlhp.record import AnalysisError, Sweep

EVALUATORS = ("ped_anova", "fanova")


def importance(sweep: Sweep, evaluator: str = "ped_anova") -> dict:
    """Every searched parameter ranked by importance, with its best value; a note says why a
    ranking could not be computed (too few complete trials, nothing varies)."""
    if evaluator not in EVALUATORS:
        raise AnalysisError(f"evaluator must be one of {EVALUATORS}, got {evaluator!r}")
    complete = [
        t
        for t in sweep.trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    out: dict[str, Any] = {
        "evaluator": evaluator,
        "objective": sweep.objective,
        "direction": "maximize" if sweep.maximize else "minimize",
        "complete_trials": len(complete),
        "note": None,
        "warnings": [],
        "importance": [],
        "top_configurations": [],
    }
    varied = [
        name
        for name in sweep.space
        if len({repr(t.params.get(name)) for t in complete if name in t.params}) > 1
    ]
    scores: dict[str, float] = {}
    if len(complete) < 2:
        out["note"] = (
            f"importance needs at least 2 complete trials with varied parameters; "
            f"the study has {len(complete)} complete"
        )
    elif not varied:
        out["note"] = "no searched parameter varies across the complete trials"
    else:
        scores = _scores(sweep, complete, varied, out)
    best = _best(complete, sweep.maximize)
    ranked = sorted(scores, key=lambda n: -scores[n])
    for name in ranked + [n for n in sweep.space if n not in scores]:
        entry: dict[str, Any] = {
            "param": name,
            "importance": float(scores[name]) if name in scores else None,
        }
        if name not in scores:
            entry["why"] = (
                "constant across the complete trials"
                if len(complete) >= 2 and name not in varied
                else out["note"] or "not assessed"
            )
        known = best is not None and name in best.params
        entry["best_value"] = plain(sweep.value(name, best.params[name])) if known else None
        entry["log_scale"] = bool(getattr(sweep.space[name], "log", False))
        out["importance"].append(entry)
    return out


def _scores(
    sweep: Sweep, complete: list[FrozenTrial], varied: list[str], out: dict[str, Any]
) -> dict[str, float]:
    """The evaluator's importance of the `varied` parameters; its warnings, a fallback and
    a note on a rough or failed ranking go into `out`."""
    ev, fallback = None, None
    if out["evaluator"] == "fanova":
        try:  # optuna's fANOVA needs scikit-learn, which rlhp does not install
            ev = optuna.importance.FanovaImportanceEvaluator(seed=0)
            # fANOVA assesses parameters present in every complete trial
            varied = [n for n in varied if all(n in t.params for t in complete)]
        except ImportError:
            out["evaluator"] = "ped_anova"
            fallback = "fanova needs scikit-learn (pip install scikit-learn): used ped_anova"
    scores: dict[str, float] = {}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scores = optuna.importance.get_param_importances(
                sweep.study,
                evaluator=ev or optuna.importance.PedAnovaImportanceEvaluator(),
                params=varied,
            )
        out["warnings"] = sorted({str(w.message) for w in caught})
    except Exception as e:  # a sampler-specific corner: keep the rest of the analysis
        out["note"] = f"{out['evaluator']} failed: {type(e).__name__}: {e}"
    if scores and len(complete) < 10:
        out["note"] = f"only {len(complete)} complete trials: a rough ranking"
    if fallback:
        out["note"] = "; ".join(filter(None, [fallback, out["note"]]))
    return scores


def _best(trials: list[FrozenTrial], maximize: bool) -> FrozenTrial | None:
    if not trials:
        return None
    return (max if maximize else min)(trials, key=lambda t: t.value)


def top_configurations(df: pd.DataFrame, space: dict, configs: list[dict]) -> list[dict]:
    files = {c["trial"]: c["file"] for c in configs}
    out = []
    for _, row in df[df["state"] == "complete"].head(TOP).iterrows():
        number = int(row["trial"])
        entry = {
            "rank": int(row["rank"]),
            "trial": number,
            "objective": plain(row["objective"]),
            "objective_std": None if pd.isna(row["objective_std"]) else plain(row["objective_std"]),
            "params": {name: plain(row[name]) for name in space},
        }
        if number in files:
            entry["config"] = files[number]
        out.append(entry)
    return out
