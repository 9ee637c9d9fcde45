"""Batched search with `hydra.sweeper.population_trials=N` (default: the population) through the
real CLI: a population job is retired after N trials, its slot starts a new job whose first trial
draws the structure again; every trial is recorded once, also after a SIGKILL of the
controller."""

import itertools
import json
from pathlib import Path

import pytest
from optuna.trial import TrialState

from rlhp import record
from rlhp.sweep._batched import retire_after, slot_free

from ._cli import (
    kill_group,
    load_study,
    output,
    run_sweep,
    start_sweep,
    trial_config,
    trial_dirs,
    wait_for,
)

BASE = [
    "algo=ppo",
    "env=cartpole",
    "env.max_frame=1024",
    "log_frequency=512",
    "hydra.sweeper.sampler.seed=0",
    "algo.lr=tag(log, interval(1e-4, 3e-3))",
    "algo.time_horizon=choice(16, 32, 64)",
    "algo.hid_layers=choice([16],[32],[64])",
    "hydra.sweeper.population=2",
    "hydra.sweeper.max_concurrent=1",
]


def assigned(sweep_dir: Path) -> dict[int, list[int]]:
    """Population job -> the trials its inbox was given, in order."""
    out = {}
    for inbox in sorted(
        (sweep_dir / "populations").glob("*/inbox.jsonl"), key=lambda p: int(p.parent.name)
    ):
        lines = [json.loads(line) for line in inbox.read_text().splitlines()]
        out[int(inbox.parent.name)] = [line["trial"] for line in lines]
    return out


def structure(sweep_dir: Path, number: int) -> tuple:
    cfg = trial_config(sweep_dir, number)
    return cfg.algo.time_horizon, tuple(cfg.algo.hid_layers)


def test_retire_after_applies_only_to_structure_fixed_per_job():
    assert retire_after(6, size=2, fix=True, structural=True) == 6
    assert retire_after(None, size=2, fix=True, structural=True) == 2  # one population's worth
    assert retire_after(6, size=2, fix=False, structural=True) is None  # grid, dgd: as before
    assert retire_after(6, size=2, fix=True, structural=False) is None  # nothing to draw again


def test_slot_free_only_beside_a_retired_job_with_half_its_population_left():
    assert slot_free([], size=4)
    assert slot_free([(True, 2)], size=4) and slot_free([(True, 0)], size=4)
    assert not slot_free([(True, 3)], size=4)  # more than half still training
    assert not slot_free([(False, 0)], size=4)  # not retired (grid, dgd: as before)
    assert not slot_free([(True, 0), (False, 1)], size=4)  # one extra job per slot at most
    assert slot_free([(True, 1)], size=3) and not slot_free([(True, 2)], size=3)


@pytest.mark.parametrize("population_trials", [None, 6])
def test_retired_jobs_redraw_the_structure(population_trials, tmp_path):
    """By default a job takes one population's worth (2 trials); 6 (n_trials): never retired."""
    sweep = tmp_path / "sweep"
    args = [*BASE, "hydra.sweeper.n_trials=6"]
    if population_trials is not None:
        args.append(f"hydra.sweeper.population_trials={population_trials}")
    proc = run_sweep(sweep, *args)
    assert proc.returncode == 0, output(proc)
    jobs = assigned(sweep)
    study = load_study(sweep)
    launched = [t for t in study.trials if "rejected" not in t.user_attrs]
    assert len(launched) == 6 and all(t.state == TrialState.COMPLETE for t in launched)
    given = [n for trials in jobs.values() for n in trials]
    assert sorted(given) == sorted(t.number for t in launched)  # each trial assigned once
    for trials in jobs.values():
        assert len({structure(sweep, n) for n in trials}) == 1
    kinds = [structure(sweep, trials[0]) for trials in jobs.values()]
    if population_trials == 6:
        assert len(jobs) == 1  # one job trained them all, one structure
        return
    assert [len(trials) for trials in jobs.values()] == [2, 2, 2]
    assert len(set(kinds)) > 1, kinds  # each new job drew its structure again
    assert all((sweep / "populations" / str(j) / "closed").exists() for j in jobs)
    # one slot: a job started once the one before it was retired (given its 2 trials) and had
    # at most 1 (half the population) still training; the one before that had ended
    by_number = {t.number: t for t in launched}
    order = list(jobs.values())
    for i, (before, after) in enumerate(itertools.pairwise(order)):
        start = min(by_number[n].datetime_start for n in after)
        assert all(by_number[n].datetime_start <= start for n in before)
        assert sum(by_number[n].datetime_complete > start for n in before) <= 1
        if i:
            assert start >= max(by_number[n].datetime_complete for n in order[i - 1])


def test_sigkill_of_the_controller_with_retired_jobs_resumes_to_exactly_n_trials(tmp_path):
    sweep, log = tmp_path / "sweep", tmp_path / "log"
    args = [*BASE, "env.max_frame=4096", "hydra.sweeper.n_trials=6"]
    proc = start_sweep(sweep, *args, log=log)
    try:
        wait_for(lambda: len(assigned(sweep)) >= 2, proc, 240, "a second population job", log)
    finally:
        kill_group(proc)
    again = run_sweep(sweep, *args)
    assert again.returncode == 0, output(again)
    study = load_study(sweep)
    # a sample the kill cut short (mid-ask) is rejected on resume, never launched
    launched = [t for t in study.trials if record.state(t) != record.REJECTED]
    assert len(launched) == 6 and all(t.state == TrialState.COMPLETE for t in launched)
    for t in launched:
        assert (sweep / str(t.number) / "result.yaml").is_file()
    jobs = assigned(sweep)
    assert all(len(trials) <= 2 for trials in jobs.values())
    assert {n for trials in jobs.values() for n in trials} == {t.number for t in launched}


def test_population_trials_below_the_population_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(sweep, *BASE, "hydra.sweeper.population_trials=1")
    assert proc.returncode != 0, output(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, output(proc)
    assert lines[0].startswith("rlhp: error: hydra.sweeper.population_trials"), output(proc)
    assert trial_dirs(sweep) == [] and not (sweep / "study.journal").exists()
