"""Batched search with `hydra.sweeper.population_trials=N` (default: the group's population)
through the real CLI: a structure group is retired after N trials and its job, the same process,
opens a new group whose first trial draws the structure again; every trial is recorded once,
also after a SIGKILL of the controller."""

import itertools
from pathlib import Path

import pytest
from optuna.trial import TrialState

from rlhp import record
from rlhp.sweep._batched import (
    NOWHERE,
    Batched,
    PopulationJob,
    Proposal,
    joins,
    opens,
    placement,
    retire_after,
    slot_free,
    slot_trials,
)

from ._cli import (
    assigned,
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


def structure(sweep_dir: Path, number: int) -> tuple:
    cfg = trial_config(sweep_dir, number)
    return cfg.algo.time_horizon, tuple(cfg.algo.hid_layers)


def test_retire_after_applies_only_to_structure_fixed_per_group():
    assert retire_after(6, size=2, fix=True, structural=True) == 6
    assert retire_after(None, size=2, fix=True, structural=True) == 2  # one population's worth
    assert retire_after(6, size=2, fix=False, structural=True) is None  # grid, dgd: as before
    assert retire_after(6, size=2, fix=True, structural=False) is None  # nothing to draw again


def test_a_slot_opens_a_group_once_its_retired_groups_have_half_its_population_left():
    job = PopulationJob(0, 0, None, None)
    for number, kind in enumerate("aaab"):
        job.trials[number] = Proposal(None, Path(), [], kind, {})
    job.kinds = {"b": {}}  # a retired: 3 of its trials training
    assert job.retiring() == 3 and not opens(3, size=4) and opens(3, size=6)
    assert job.groups() == {"b": 1} and job.room(size=1) and not job.room(size=0)
    del job.trials[0]
    assert job.retiring() == 2 and opens(2, size=4)
    job.closed = True  # a closed (retired) job's trials all retire
    assert job.retiring() == 3
    # a slot counts the retiring trials of its jobs: a retired job's and its successor's
    batched = Batched.__new__(Batched)
    batched.size, successor = 4, PopulationJob(1, 0, None, None)
    successor.trials[7] = Proposal(None, Path(), [], "c", {})
    other_slot = PopulationJob(2, 1, None, None, kinds={"a": {}})
    other_slot.trials = dict(job.trials)  # in its open group "a", or retiring ("b")
    batched.jobs = [job, successor, other_slot]
    assert not batched.opens(0) and batched.opens(1)  # 3 retiring on slot 0, 1 on slot 1
    del job.trials[1]
    successor.kinds = {}  # its group retired too: 2 + 1 retiring
    assert not batched.opens(0)
    del job.trials[2]
    assert batched.opens(0)
    assert slot_trials(4) == 6 and slot_trials(3) == 4  # open P and at most P / 2 retiring
    # a job that may not open a group fills its open ones, or has no room
    assert placement({"b": 1}, limit=2, size=4, opens=False) == "b"
    assert placement({}, limit=1, size=4, opens=False) is NOWHERE
    assert placement({}, limit=1, size=4) is None
    assert not joins({"b": 1}, "c", new_group=True, limit=2, size=4, opens=False)
    assert joins({"b": 1}, "a", new_group=True, limit=2, size=4)  # a retired structure again


def test_slot_free_only_beside_a_retired_job_with_half_its_population_left():
    assert slot_free([], size=4)
    assert slot_free([(True, 2)], size=4) and slot_free([(True, 0)], size=4)
    assert not slot_free([(True, 3)], size=4)  # more than half still training
    assert not slot_free([(False, 0)], size=4)  # not retired
    assert not slot_free([(True, 0), (False, 1)], size=4)  # one extra job per slot at most
    assert slot_free([(True, 1)], size=3) and not slot_free([(True, 2)], size=3)


def test_a_job_is_retired_at_half_its_time_limit_and_its_slot_starts_another(tmp_path):
    """hydra.launcher.timeout_min=1: a job takes trials for 30 s, then its slot's next job
    does; the search starts trials for 45 s (budget_hours)."""
    sweep = tmp_path / "sweep"
    args = [*BASE, "hydra.sweeper.n_trials=500", "hydra.sweeper.budget_hours=0.0125"]
    args += ["hydra.launcher.timeout_min=1"]
    proc = run_sweep(sweep, *args)
    assert proc.returncode == 0, output(proc)
    study = load_study(sweep)
    launched = [t for t in study.trials if "rejected" not in t.user_attrs]
    assert launched and all(t.state == TrialState.COMPLETE for t in launched)
    jobs = assigned(sweep)
    assert len(jobs) >= 2, jobs
    assert sorted(n for trials in jobs.values() for n in trials) == sorted(
        t.number for t in launched
    )  # each trial assigned once
    retired = [ln for ln in proc.stdout.splitlines() if "retired at half its time limit" in ln]
    assert len(retired) >= len(jobs) - 1, output(proc)
    assert all((sweep / "populations" / str(j) / "closed").exists() for j in jobs)


@pytest.mark.parametrize("population_trials", [None, 6])
def test_retired_groups_redraw_the_structure_in_the_same_job(population_trials, tmp_path):
    """By default a group takes one population's worth (2 trials); 6 (n_trials): never
    retired. One slot: one job, one process, for the whole search."""
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
    assert list(jobs) == [0] and sorted(jobs[0]) == sorted(t.number for t in launched)
    order = jobs[0]
    if population_trials == 6:
        assert len({structure(sweep, n) for n in order}) == 1  # one group trained them all
        return
    groups = [order[i : i + 2] for i in range(0, 6, 2)]
    for group in groups:
        assert len({structure(sweep, n) for n in group}) == 1
    kinds = [structure(sweep, group[0]) for group in groups]
    assert len(set(kinds)) > 1, kinds  # each new group drew its structure again
    retired = [ln for ln in proc.stdout.splitlines() if "retired after 2 trials" in ln]
    assert len(retired) == 3, output(proc)
    # a group opened once the one before it was retired (given its 2 trials) and had at most 1
    # (half the population) still training; the one before that had ended
    by_number = {t.number: t for t in launched}
    for i, (before, after) in enumerate(itertools.pairwise(groups)):
        start = min(by_number[n].datetime_start for n in after)
        assert all(by_number[n].datetime_start <= start for n in before)
        assert sum(by_number[n].datetime_complete > start for n in before) <= 1
        if i:
            assert start >= max(by_number[n].datetime_complete for n in groups[i - 1])
    log = (sweep / "populations" / "0" / "train.log").read_text()
    assert log.count("structure group of trials") >= len(set(kinds)), log


def test_sigkill_of_the_controller_with_retired_jobs_resumes_to_exactly_n_trials(tmp_path):
    sweep, log = tmp_path / "sweep", tmp_path / "log"
    args = [*BASE, "env.max_frame=4096", "hydra.sweeper.n_trials=6"]
    proc = start_sweep(sweep, *args, log=log)
    try:
        wait_for(lambda: len(assigned(sweep).get(0, [])) >= 3, proc, 240, "a second group", log)
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
    assert len(jobs) == 2  # the killed controller's job, and the one that resumed its trials
    assert {n for trials in jobs.values() for n in trials} == {t.number for t in launched}


def test_population_trials_below_the_population_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(sweep, *BASE, "hydra.sweeper.population_trials=1")
    assert proc.returncode != 0, output(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, output(proc)
    assert lines[0].startswith("rlhp: error: hydra.sweeper.population_trials"), output(proc)
    assert trial_dirs(sweep) == [] and not (sweep / "study.journal").exists()
