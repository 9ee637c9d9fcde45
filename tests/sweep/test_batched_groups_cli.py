"""Batched search with `hydra.sweeper.structure_groups=G` through the real CLI: a population job
holds trials of up to G structures, each structure group a population of its own, stepped in
turn; the placement rule that decides which structure the next trial of a job is asked with."""

from _members import decisions
from optuna.trial import TrialState

from rlhp.sweep._batched import NOWHERE, joins, placement

from ._cli import assigned, load_study, output, run_sweep, trial_config


def test_a_job_draws_structure_freely_until_it_has_its_groups_then_fills_the_smallest():
    assert placement({}, limit=2, size=2) is None  # a new job: drawn freely
    assert placement({"a": 1}, limit=2, size=2) is None  # one group of two: drawn freely
    assert placement({"a": 2, "b": 1}, limit=2, size=2) == "b"  # the group with fewest trials
    assert placement({"a": 3, "b": 2}, limit=2, size=2) == "b"  # one queued beside its 2
    assert placement({"a": 3, "b": 3}, limit=2, size=2) is NOWHERE  # both full and queued
    assert placement({"a": 4}, limit=1, size=4) == "a"  # G = 1: one structure, as before
    assert placement({"a": 5}, limit=1, size=4) is NOWHERE


def test_a_trial_joins_its_structures_group_or_starts_one_where_a_job_has_fewer_groups():
    groups = {"a": 2, "b": 3}
    assert joins(groups, "a", new_group=False, limit=3, size=2)
    assert not joins(groups, "b", new_group=False, limit=3, size=2)  # full, one queued
    assert not joins(groups, "b", new_group=True, limit=3, size=2)  # never a second group of b
    assert joins(groups, "c", new_group=True, limit=3, size=2)
    assert not joins(groups, "c", new_group=True, limit=2, size=2)  # G groups already
    assert not joins(groups, "c", new_group=False, limit=3, size=2)


def test_one_job_trains_two_structures_at_once(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(
        sweep,
        "algo=ppo",
        "env=cartpole",
        "env.max_frame=1024",
        "log_frequency=256",
        "+meta.search_scheduler={grace_period: 256, reduction_factor: 2}",
        "hydra.sweeper.sampler.seed=0",
        "algo.lr=tag(log, interval(1e-4, 3e-3))",
        "algo.time_horizon=choice(16, 32)",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.population=4",
        "hydra.sweeper.structure_groups=2",
        "hydra.sweeper.max_concurrent=1",
    )
    assert proc.returncode == 0, output(proc)
    study = load_study(sweep)
    assert len(study.trials) == 6
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert all((sweep / str(t.number) / "result.yaml").is_file() for t in study.trials)
    jobs = assigned(sweep)
    assert sorted(n for trials in jobs.values() for n in trials) == list(range(6))
    horizons = {j: {trial_config(sweep, n).algo.time_horizon for n in ns} for j, ns in jobs.items()}
    assert {16, 32} in horizons.values(), horizons  # one job trained both structures
    for j, kinds in horizons.items():
        log = (sweep / "populations" / str(j) / "train.log").read_text()
        assert (sweep / "populations" / str(j) / "structure_groups").read_text() == "2\n"
        if len(kinds) == 2:
            assert "started (2 live)" in log, log  # its two groups trained at once
    reports = [d for d in decisions(sweep) if d["value"] == d["value"]]
    assert reports and {int(d["trial"]) for d in reports} <= set(range(6))
