"""The rlhp sweeper through the real CLI: `python -m rlhp.train -m ...` in subprocesses.

Every trial is a submitit_local process training CartPole for a few thousand frames. What a sweep
did is read back from its artefacts only: the Optuna JournalStorage file (with optuna itself),
state.yaml, the trial directories and what the trials wrote there.

Independent sweeps run a few at a time in the background (`background`) while the tests that
read them wait; the two timing-sensitive tests (resume after SIGKILL, busy slots) run last.
"""

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from optuna.trial import TrialState

from rlhp.sweep import _constraint

from ._cli import (
    TINY,
    Background,
    kill_group,
    load_study,
    output,
    run_sweep,
    start_sweep,
    state,
    trial_config,
    trial_dirs,
    wait_for,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
ALGO = OmegaConf.load(CONF / "algo" / "ppo.yaml")
TUNED = OmegaConf.load(CONF / "tuned" / "ppo_cartpole.yaml")  # applied for algo=ppo env=cartpole

SAMPLERS = {
    "tpe": "optuna.samplers.TPESampler",
    "random": "optuna.samplers.RandomSampler",
    "grid": "optuna.samplers.GridSampler",
    "gp": "optuna.samplers.GPSampler",
    "cmaes": "optuna.samplers.CmaEsSampler",
    "qmc": "optuna.samplers.QMCSampler",
}
CONTINUOUS = {
    "algo.lr": "tag(log, interval(1e-4, 1e-3))",
    "algo.gamma": "interval(0.95, 0.999)",
    "algo.hid_layers": "choice([32,32], [64,64])",
}
DISCRETE = {
    "algo.lr": "choice(3e-4, 1e-3)",
    "algo.gamma": "choice(0.98, 0.99)",
    "algo.hid_layers": "choice([32,32], [64,64])",
}

# grid of 2 x 2 = 4 points: one rejected by the constraint, two crash (val_loss_coef 3e38 makes
# the loss infinite and the trial raise), one completes; n_trials 10 is more than the grid holds
GRID_CONSTRAINT = "algo.val_loss_coef < 1 and algo.gamma > 0.985"
GRID = [
    *TINY,
    "hydra/sweeper/sampler=grid",
    "hydra.sweeper.n_trials=10",
    "algo.val_loss_coef=choice(0.5, 3e38)",
    "algo.gamma=choice(0.98, 0.99)",
    f"hydra.sweeper.constraints=['{GRID_CONSTRAINT}']",
]

LR = "algo.lr=tag(log, interval(1e-4, 1e-3))"
BAD_INPUT = {
    # key: (overrides, words the one error line names)
    "unknown_env": (["env.id=Nope-v0", LR], ["Nope-v0"]),
    # an unknown search function in the sweeper's params (a preset); on the command line Hydra
    # parses it first (test_bad_search_argument_is_refused_before_launch)
    "bad_search_type": (["++hydra.sweeper.params={algo.lr: 'foo(1, 2)'}"], ["algo.lr", "foo"]),
    "low_above_high": (["algo.lr=interval(1e-3, 1e-4)"], ["algo.lr", "low"]),
    "log_of_zero": (["algo.lr=tag(log, interval(0, 1e-3))"], ["algo.lr"]),
    "no_such_path": (["algo.nosuch=interval(0, 1)"], ["algo.nosuch"]),
    "constraint_unknown_name": (
        [LR, "hydra.sweeper.constraints=['algo.lr > 1e-4 and algo.nosuch > 1']"],
        ["algo.nosuch"],
    ),
    "constraint_unsafe": (
        [LR, "hydra.sweeper.constraints=[\"__import__('os').system('touch pwned')\"]"],
        ["__import__", "not allowed"],
    ),
    "constraint_subscript": (
        [LR, "hydra.sweeper.constraints=['algo.hid_layers[0] > 32']"],
        ["algo.hid_layers[0]", "not allowed"],
    ),
    "max_concurrent_negative": ([LR, "hydra.sweeper.max_concurrent=-1"], ["max_concurrent"]),
    "max_concurrent_zero": ([LR, "hydra.sweeper.max_concurrent=0"], ["max_concurrent"]),
    "budget_negative": ([LR, "hydra.sweeper.budget_hours=-1"], ["budget_hours"]),
    "direction_up": ([LR, "hydra.sweeper.direction=up"], ["direction", "'up'"]),
    "brackets": ([LR, "+meta.search_scheduler.brackets=5"], ["search_scheduler"]),
    "lr_negative": (["algo.lr=-0.001", "algo.gamma=interval(0.9, 0.99)"], ["algo.lr", "(0, 1]"]),
    "gamma_bounds": (["algo.gamma=interval(-1, 2)"], ["algo.gamma", "(0, 1]"]),
    "prior_outside": (
        [LR, "+hydra.sweeper.prior_values={algo.lr: 0.5}"],
        ["prior_values.algo.lr", "outside"],
    ),
    "validate_max_session": (
        [LR, "hydra.sweeper.validate.max_session=0"],
        ["validate.max_session", ">= 1"],
    ),
    "constraint_rejects_all": (
        [LR, "hydra.sweeper.constraints=['algo.lr > 0']"],
        ["rejected 100 samples"],
    ),
    "constraint_huge_power": (
        [LR, "hydra.sweeper.constraints=['algo.lr > 9**9**9']"],
        ["9**9**9", "cannot be evaluated"],
    ),
    "constraint_string_arithmetic": (
        [LR, "hydra.sweeper.constraints=[\"'a' * 10**9 == algo.lr\"]"],
        ["strings"],
    ),
    "constraint_too_long": (
        [LR, "hydra.sweeper.constraints=['algo.lr > " + "+".join(["1"] * 50000) + "']"],
        ["longer than"],
    ),
}
DRY_CONSTRAINTS = ["algo.time_horizon == 128", "algo.minibatch_size > algo.time_horizon * 8"]


def args(space: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in space.items()]


JOB_OF = {  # tests that read a background sweep without naming it in a parameter
    "test_dry_run_prints_configurations_and_launches_nothing": "dry_run",
    "test_bad_search_argument_is_refused_before_launch": "bad_search_argument",
    "test_grid_stops_when_exhausted": "grid_exhaustion",
    "test_constraint_rejects_and_never_launches": "grid_exhaustion",
    "test_crashing_trial_is_recorded_and_the_sweep_finishes": "grid_exhaustion",
    "test_max_session_records_objective_std_and_the_mean_objective": "sessions",
    "test_objective_eval_ranks_and_stops_on_greedy_returns": "eval",
}


def wanted(request) -> set[str]:
    """The background sweeps the selected tests of this module read (all of them by default)."""
    keys = set()
    for item in request.session.items:
        if getattr(item, "module", None) is not request.module:
            continue
        if callspec := getattr(item, "callspec", None):
            keys.update(v for v in callspec.params.values() if isinstance(v, str))
        keys.add(JOB_OF.get(item.originalname, ""))
    return keys


@pytest.fixture(scope="module")
def background(request, tmp_path_factory):
    """Start the independent sweeps of this module; tests wait for the ones they read."""
    base = tmp_path_factory.mktemp("sweeps")
    keys = wanted(request)
    bg = Background(workers=3, keys=keys)
    bg.base = base
    for key, (overrides, _) in BAD_INPUT.items():
        bg.start(key, base / key, *TINY, "hydra.sweeper.n_trials=2", *overrides)
    bg.start("bad_search_argument", base / "bad_search_argument", *TINY, "algo.lr=foo(1,2)")
    bg.start(
        "dry_run",
        base / "dry_run",
        "+search=ppo_cartpole",
        "hydra.sweeper.dry_run=true",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.constraints=[" + ",".join(f"'{c}'" for c in DRY_CONSTRAINTS) + "]",
    )
    bg.start("grid_exhaustion", base / "grid_exhaustion", *GRID)
    for sampler in SAMPLERS:
        space = DISCRETE if sampler == "grid" else CONTINUOUS
        bg.start(
            sampler,
            base / sampler,
            *TINY,
            f"hydra/sweeper/sampler={sampler}",
            "hydra.sweeper.n_trials=2",
            *args(space),
        )
    bg.start("sessions", base / "sessions", *TINY, "hydra.sweeper.n_trials=1", "max_session=2", LR)
    bg.start(
        "eval",
        base / "eval",
        "env.max_frame=2000",
        "log_frequency=500",
        "eval_episodes=2",
        "objective=eval",
        "meta.search_scheduler={grace_period: 500, reduction_factor: 2}",
        "hydra.sweeper.n_trials=3",
        LR,
    )
    yield bg
    bg.close()


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


# -- bad input: refused before anything is launched


@pytest.mark.parametrize("key", list(BAD_INPUT))
def test_bad_input_fails_with_one_line_and_launches_nothing(background, key):
    proc = background.result(key)
    sweep_dir = background.base / key
    assert proc.returncode != 0, output(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, output(proc)
    assert lines[0].startswith("rlhp: error: "), output(proc)
    for word in BAD_INPUT[key][1]:
        assert word in lines[0], output(proc)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert trial_dirs(sweep_dir) == []
    assert not (sweep_dir / "study.journal").exists()
    assert not (sweep_dir / ".submitit").exists()
    assert not (sweep_dir.parent / "pwned").exists()


def test_bad_search_argument_is_refused_before_launch(background):
    """`algo.lr=foo(1,2)` as an argument: Hydra's override parser refuses it before the sweeper
    is set up, in Hydra's own words (several lines: the argument, the error, the functions)."""
    proc = background.result("bad_search_argument")
    sweep_dir = background.base / "bad_search_argument"
    assert proc.returncode != 0, output(proc)
    assert "algo.lr=foo(1,2)" in proc.stderr, output(proc)
    assert "Unknown function 'foo'" in proc.stderr, output(proc)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert trial_dirs(sweep_dir) == []
    assert not (sweep_dir / "study.journal").exists()
    assert not (sweep_dir / ".submitit").exists()


def test_dry_run_prints_configurations_and_launches_nothing(background):
    proc = background.result("dry_run")
    sweep_dir = background.base / "dry_run"
    assert proc.returncode == 0, output(proc)
    trials = re.findall(r"^trial (\d+): (.*)$", proc.stdout, re.MULTILINE)
    assert [int(n) for n, _ in trials] == list(range(6)), output(proc)
    configs = [dict(kv.split("=", 1) for kv in line.split()) for _, line in trials]
    preset = OmegaConf.load(CONF / "search" / "ppo_cartpole.yaml").hydra.sweeper.params
    for config in configs:
        assert set(config) == set(preset)  # every searched dimension, nothing else
        values = {k: parse_value(v) for k, v in config.items()}
        assert _constraint.violated(DRY_CONSTRAINTS, values) is None, config
    # the prior first: the composed config's values where the space holds them
    prior = {k: parse_value(v) for k, v in configs[0].items()}
    composed = OmegaConf.merge(ALGO, TUNED)
    assert (composed.gamma, composed.lr) == (TUNED.gamma, TUNED.lr) != (ALGO.gamma, ALGO.lr)
    for name in ["gamma", "lam", "lr", "clip_eps", "time_horizon", "minibatch_size"]:
        assert prior[f"algo.{name}"] == composed[name], name
    assert prior["algo.training_epoch"] == composed.training_epoch
    assert prior["algo.hid_layers"] == list(composed.hid_layers)
    assert len({tuple(sorted(c.items())) for c in configs}) == len(configs)  # all different
    assert re.search(r"^rlhp: dry run, \d+ sampled configurations rejected", proc.stdout, re.M)
    assert not sweep_dir.exists() or trial_dirs(sweep_dir) == []
    assert not (sweep_dir / "study.journal").exists()


# -- every sampler


def in_space(name: str, value, space: dict[str, str]) -> bool:
    expr = space[name]
    if expr.startswith("choice"):
        choices = [parse_value(c) for c in re.findall(r"\[[^\]]*\]|[^,()\s\[\]]+", expr[6:])]
        return (parse_value(value) if isinstance(value, str) else value) in choices
    low, high = (float(x) for x in re.findall(r"[\d.e+-]+", expr.split("interval")[1]))
    return low <= value <= high


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs(background, sampler):
    proc = background.result(sampler)
    sweep_dir = background.base / sampler
    space = DISCRETE if sampler == "grid" else CONTINUOUS
    assert proc.returncode == 0, output(proc)
    study = load_study(sweep_dir)
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1]
    assert all(t.state == TrialState.COMPLETE for t in trials), output(proc)
    assert trial_dirs(sweep_dir) == [0, 1]
    # the sampler asked for on the command line is the one the sweep ran with
    hydra_cfg = OmegaConf.load(sweep_dir / "0" / ".hydra" / "hydra.yaml").hydra
    assert hydra_cfg.sweeper.sampler._target_ == SAMPLERS[sampler]
    for t in trials:
        assert set(t.params) == set(space)
        for name, value in t.params.items():
            assert in_space(name, value, space), (name, value)
        # the trial process ran with the sampled values
        cfg = trial_config(sweep_dir, t.number)
        assert cfg.algo.lr == pytest.approx(t.params["algo.lr"], rel=1e-12)
        assert cfg.algo.gamma == pytest.approx(t.params["algo.gamma"], rel=1e-12)
        assert list(cfg.algo.hid_layers) == ast.literal_eval(t.params["algo.hid_layers"])
        result = OmegaConf.load(sweep_dir / str(t.number) / "result.yaml")
        assert t.value == pytest.approx(result.objective)
        assert t.user_attrs["frame"] == result.frame >= 1000
    if sampler == "grid":  # distinct grid points, no separate prior
        assert trials[0].params != trials[1].params
        assert "prior" not in trials[0].user_attrs
        assert {t.system_attrs["grid_id"] for t in trials} == {0, 1}
    else:  # the prior runs first, with the composed config's values (tuned ones included)
        assert trials[0].user_attrs.get("prior") is True
        assert (TUNED.lr, TUNED.gamma) != (ALGO.lr, ALGO.gamma)
        assert trials[0].params == {
            "algo.lr": TUNED.lr,
            "algo.gamma": TUNED.gamma,
            "algo.hid_layers": "[64,64]",
        }
        assert list(ALGO.hid_layers) == [64, 64]
        assert trials[1].params != trials[0].params
        assert "prior" not in trials[1].user_attrs
    st = state(sweep_dir)
    assert (st.n_trials, st.complete, st.failed, st.rejected, st.running) == (2, 2, 0, 0, 0)
    assert st.best.trial == study.best_trial.number
    assert st.best.value == pytest.approx(study.best_value)


# -- grid exhaustion, constraints and a crashing trial (one sweep)


@pytest.fixture(scope="module")
def grid(background):
    proc = background.result("grid_exhaustion")
    sweep_dir = background.base / "grid_exhaustion"
    return proc, sweep_dir, load_study(sweep_dir).get_trials()


def test_grid_stops_when_exhausted(grid):
    proc, sweep_dir, trials = grid
    assert proc.returncode == 0, output(proc)
    # 4 grid points although n_trials is 10: each exactly once, none run twice
    assert len(trials) == 4, [t.params for t in trials]
    points = {(t.params["algo.val_loss_coef"], t.params["algo.gamma"]) for t in trials}
    assert points == {(c, g) for c in (0.5, 3e38) for g in (0.98, 0.99)}
    assert all(t.state.is_finished() for t in trials)
    st = state(sweep_dir)
    assert (st.complete, st.failed, st.rejected, st.running) == (1, 2, 1, 0)


def test_constraint_rejects_and_never_launches(grid):
    proc, sweep_dir, trials = grid
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    assert len(rejected) == 1
    (r,) = rejected
    assert r.user_attrs["rejected"] == GRID_CONSTRAINT
    assert r.state == TrialState.PRUNED and r.constraints == {"rlhp": 1.0}  # infeasible
    assert _constraint.evaluate(GRID_CONSTRAINT, r.params)  # it does match the constraint
    launched = [t for t in trials if "rejected" not in t.user_attrs]
    for t in launched:
        assert not _constraint.evaluate(GRID_CONSTRAINT, t.params)
    assert trial_dirs(sweep_dir) == sorted(t.number for t in launched)
    assert r.number not in trial_dirs(sweep_dir)


def test_crashing_trial_is_recorded_and_the_sweep_finishes(grid):
    proc, sweep_dir, trials = grid
    assert proc.returncode == 0, output(proc)
    crashed = [t for t in trials if t.params["algo.val_loss_coef"] == 3e38]
    assert len(crashed) == 2
    for t in crashed:
        assert t.state == TrialState.FAIL
        assert "rejected" not in t.user_attrs
        assert "loss" in t.user_attrs["error"], t.user_attrs
        assert (sweep_dir / str(t.number)).is_dir()  # it was launched
        assert not (sweep_dir / str(t.number) / "result.yaml").exists()
    (ok,) = [t for t in trials if t.state == TrialState.COMPLETE]
    assert ok.params == {"algo.val_loss_coef": 0.5, "algo.gamma": 0.98}
    result = OmegaConf.load(sweep_dir / str(ok.number) / "result.yaml")
    assert ok.value == pytest.approx(result.objective)
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.best_trial == ok.number


# -- several sessions per trial


def test_max_session_records_objective_std_and_the_mean_objective(background):
    proc = background.result("sessions")
    sweep_dir = background.base / "sessions"
    assert proc.returncode == 0, output(proc)
    (trial,) = load_study(sweep_dir).get_trials()
    assert trial.state == TrialState.COMPLETE
    result = OmegaConf.load(sweep_dir / "0" / "result.yaml")
    finals = np.array([s.final for s in result.sessions])
    assert len(finals) == 2 and np.isfinite(finals).all()
    assert result.objective_std == pytest.approx(finals.std())
    assert trial.user_attrs["objective_std"] == pytest.approx(finals.std())
    assert trial.user_attrs["sessions"] == 2
    assert trial.value == pytest.approx(finals.mean())  # objective final, the default
    assert result.objective == pytest.approx(finals.mean())
    metrics = pd.read_csv(sweep_dir / "0" / "metrics.csv")
    assert sorted(metrics.session.unique()) == [0, 1]  # both seeds trained
    for s in (0, 1):
        assert (sweep_dir / "0" / "checkpoints" / f"session{s}.pt").exists()


def test_objective_eval_ranks_and_stops_on_greedy_returns(background):
    proc = background.result("eval")
    sweep_dir = background.base / "eval"
    assert proc.returncode == 0, output(proc)
    decisions = pd.read_json(sweep_dir / "asha" / "decisions.jsonl", lines=True)
    assert len(decisions) >= 3  # every trial reports at the first rung
    for row in decisions.itertuples():
        metrics = pd.read_csv(sweep_dir / str(row.trial) / "metrics.csv")
        at = metrics[metrics.frame == row.frame].iloc[0]
        assert row.value == pytest.approx(at.eval_return)  # not total_reward_ma
    for trial in load_study(sweep_dir).get_trials():
        if trial.state == TrialState.COMPLETE:
            metrics = pd.read_csv(sweep_dir / str(trial.number) / "metrics.csv")
            assert trial.value == pytest.approx(metrics.eval_return.iloc[-1])


# -- resume after SIGKILL


def read_state(sweep_dir: Path):
    try:
        return state(sweep_dir)
    except Exception:  # not written yet
        return None


def checkpoint(path: Path) -> dict | None:
    try:
        return torch.load(path, weights_only=False)
    except Exception:  # not there yet
        return None


def test_resume_after_sigkill(tmp_path):
    sweep_dir = tmp_path / "resume"
    n_trials, max_frame = 4, 12000
    overrides = [
        f"env.max_frame={max_frame}",
        "log_frequency=2000",
        f"hydra.sweeper.n_trials={n_trials}",
        "hydra.sweeper.max_concurrent=2",
        LR,
    ]
    proc = start_sweep(sweep_dir, *overrides, log=tmp_path / "first.log")
    snapshot: dict = {}

    def one_complete_one_checkpointed() -> bool:
        st = read_state(sweep_dir)
        if st is None or st.complete < 1:
            return False
        for number in st.running_trials:
            ckpt = checkpoint(sweep_dir / str(number) / "checkpoints" / "session0.pt")
            # half-way or less: the trial cannot finish before the kill, even on a loaded machine
            if ckpt is not None and ckpt["frame"] <= max_frame // 2:
                snapshot.update(number=number, frame=ckpt["frame"], history=ckpt["history"])
                return True
        return False

    try:
        wait_for(one_complete_one_checkpointed, proc, 400, "a complete and a running trial")
    finally:
        kill_group(proc)  # the controller and its trial processes, all at once
    killed = load_study(sweep_dir).get_trials()
    interrupted = snapshot["number"]
    assert killed[interrupted].state == TrialState.RUNNING
    assert not (sweep_dir / str(interrupted) / "result.yaml").exists()

    again = run_sweep(sweep_dir, *overrides)
    assert again.returncode == 0, output(again)
    trials = load_study(sweep_dir).get_trials()
    launched = [t for t in trials if "rejected" not in t.user_attrs]
    assert len(launched) == n_trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in launched)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert trial_dirs(sweep_dir) == sorted(t.number for t in launched)
    for t in killed:  # finished before the kill: kept as they were, not run again
        if t.state == TrialState.COMPLETE:
            assert trials[t.number].value == t.value
            assert trials[t.number].datetime_complete == t.datetime_complete
    st = state(sweep_dir)
    assert (st.complete, st.running, st.failed) == (n_trials, 0, 0)

    # the interrupted trial went on from its checkpoint rather than from frame 0: the log rows
    # up to the checkpoint are the killed process's own (same wall-clock readings)
    run_dir = sweep_dir / str(interrupted)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    frames = metrics.frame.to_numpy()
    assert len(np.unique(frames)) == len(frames)
    assert (np.diff(frames) > 0).all()
    assert frames[-1] >= max_frame
    before = metrics.iloc[: len(snapshot["history"])]
    assert before.frame.tolist() == [row["frame"] for row in snapshot["history"]]
    assert before.wall_s.tolist() == pytest.approx(
        [row["wall_s"] for row in snapshot["history"]], rel=1e-9, abs=0
    )
    final = checkpoint(run_dir / "checkpoints" / "session0.pt")
    assert final["frame"] > snapshot["frame"] and final["frame"] >= max_frame
    result = OmegaConf.load(run_dir / "result.yaml")
    assert result.wall_s >= snapshot["history"][-1]["wall_s"]  # the time before the kill counts
    assert trials[interrupted].value == pytest.approx(result.objective)


# -- slots stay busy: no batch barrier


def test_slots_stay_busy_with_trials_of_unequal_length(tmp_path):
    """Read from the order of the trials' starts and ends, never from seconds: every start
    after the first two follows an end (a freed slot is refilled, never a third at once), and
    some trial starts while the other slot's trial still runs (no batch barrier)."""
    sweep_dir = tmp_path / "slots"
    slots, n_trials = 2, 6
    # a grid of 2 lengths x 3 seeds: 3 short and 3 long trials, in the grid's (fixed) shuffled
    # order, so that a short trial runs beside a long one
    proc = run_sweep(
        sweep_dir,
        "log_frequency=500",
        "env.max_frame=choice(1000, 6000)",
        "seed=choice(0, 1, 2)",
        "hydra/sweeper/sampler=grid",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweeper.max_concurrent={slots}",
    )
    assert proc.returncode == 0, output(proc)
    trials = load_study(sweep_dir).get_trials()
    assert len(trials) == n_trials and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.params["env.max_frame"] for t in trials) == [1000] * 3 + [6000] * 3
    events = sorted(
        [(t.datetime_start, 1, t.number) for t in trials]
        + [(t.datetime_complete, 0, t.number) for t in trials]  # an end sorts before a start
    )
    order = [("start" if kind else "end", number) for _, kind, number in events]
    running: set[int] = set()
    most, refills = 0, 0
    for i, (what, number) in enumerate(order):
        if what == "start":
            # the slot an end just freed is refilled while the other slot's trial runs on
            refills += i > 0 and order[i - 1][0] == "end" and bool(running)
            running.add(number)
            most = max(most, len(running))
        else:
            running.discard(number)
    assert most == slots, order  # both slots were used, never more
    assert [w for w, _ in order[:slots]] == ["start"] * slots, order
    # a sweeper that waits for a whole batch starts trials only when none runs: no refill
    assert refills >= 1, order


def test_rejections_in_a_row_never_end_the_search(tmp_path):
    """A constraint that rejects 98% of the space (lr above 1.1e-5 of [1e-5, 1e-3], log): with
    this seed a run of 100 rejections came after 6 trials and ended the search; now a random
    feasible sample follows every 20 rejections in a row, said once."""
    proc = run_sweep(
        tmp_path / "sweep",
        "+search=ppo_cartpole",
        "hydra.sweeper.dry_run=true",
        "hydra.sweeper.n_trials=20",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=0",
        "hydra.sweeper.constraints=['algo.lr > 1.1e-5']",
    )
    assert proc.returncode == 0, output(proc)
    lrs = [float(v) for v in re.findall(r"^trial \d+: .*algo\.lr=(\S+)", proc.stdout, re.M)]
    assert len(lrs) == 20 and all(lr <= 1.1e-5 for lr in lrs), output(proc)
    assert (proc.stdout + proc.stderr).count("drawing random feasible samples") == 1
