"""rlhp.analyze on a real search (one per module), a killed one, and made-up studies."""

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from sweep._cli import kill_group, load_study, output, run_cli, run_sweep, start_sweep, wait_for

from rlhp.analysis import experiment_df
from rlhp.analyze import GRAPHS, analyze
from rlhp.record import load

# a search that has every kind of trial: the prior (val_loss_coef=3e38) fails with an inf loss,
# every other 3e38 sample is rejected by the constraint (the prior's gamma 0.9 is not > 0.9),
# the rest complete; the seeded random sampler rejects some before the third one completes
PRESET = """\
# @package _global_
env:
  max_frame: 1024
log_frequency: 256
hydra:
  sweeper:
    n_trials: 4
    max_concurrent: 2
    max_failure_rate: 1.0
    params:
      algo.val_loss_coef: choice(0.5, 3e38)
      algo.gamma: interval(0.9, 0.999)
      algo.entropy_coef: tag(log, interval(1e-4, 1e-2))
      algo.training_epoch: int(interval(2, 6))
      algo.hid_layers: choice([32,32], [64,64])
    prior_values:
      algo.val_loss_coef: 3e38
      algo.gamma: 0.9
    constraints:
      - algo.val_loss_coef > 1 and algo.gamma > 0.9
"""
SEARCHED = [
    "algo.val_loss_coef",
    "algo.gamma",
    "algo.entropy_coef",
    "algo.training_epoch",
    "algo.hid_layers",
]


def search_args(conf: Path) -> list[str]:
    """The overrides of the PRESET search, with a seeded random sampler."""
    return [
        "--config-dir",
        str(conf),
        "+search=analyze_test",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=0",
    ]


@pytest.fixture(scope="session")
def conf_dir(tmp_path_factory) -> Path:
    conf = tmp_path_factory.mktemp("conf")
    (conf / "search").mkdir()
    (conf / "search" / "analyze_test.yaml").write_text(PRESET)
    return conf


@pytest.fixture(scope="session")
def sweep(conf_dir, tmp_path_factory) -> Path:
    """A real search, analysed once; tests only read it."""
    sweep = tmp_path_factory.mktemp("analyze") / "sweep"
    proc = run_sweep(sweep, *search_args(conf_dir), timeout=300)
    assert proc.returncode == 0, output(proc)
    analyze(sweep, strict=True)
    return sweep


def test_experiment_df_loads_best_first_with_every_parameter_and_state(sweep):
    df = pd.read_csv(sweep / "experiment_df.csv")
    trials = {t.number: t for t in load_study(sweep).trials}
    assert sorted(df["trial"]) == sorted(trials)
    for name in SEARCHED:
        assert name in df.columns
    by_trial = df.set_index("trial")
    # the study's own states, as the table names them
    for number, t in trials.items():
        want = (
            "rejected"
            if "rejected" in t.user_attrs
            else {TrialState.COMPLETE: "complete", TrialState.FAIL: "failed"}[t.state]
        )
        assert by_trial.loc[number, "state"] == want
    states = set(df["state"])
    assert {"complete", "failed", "rejected"} <= states
    assert by_trial.loc[0, "state"] == "failed"  # the prior, val_loss_coef=3e38
    assert by_trial.loc[0, "algo.val_loss_coef"] == 3e38
    assert "inf" in by_trial.loc[0, "note"] or "nan" in by_trial.loc[0, "note"].lower()
    assert df.loc[df["state"] == "rejected", "note"].str.contains("constraint").all()
    # best first: the complete trials lead, by objective, and the study's best is row 0
    complete = df[df["state"] == "complete"]
    assert len(complete) == 3
    assert list(complete.index) == list(range(len(complete)))
    assert complete["objective"].is_monotonic_decreasing
    best = max(
        (t for t in trials.values() if t.state == TrialState.COMPLETE), key=lambda t: t.value
    )
    assert df.loc[0, "trial"] == best.number
    assert df.loc[0, "objective"] == pytest.approx(best.value)
    assert list(complete["rank"]) == [1, 2, 3]
    # decoded categorical values, numbers as numbers, the rest of the figures
    assert set(complete["algo.hid_layers"]) <= {"[32,32]", "[64,64]"}
    assert complete["algo.training_epoch"].between(2, 6).all()
    assert (complete["frame"] >= 1024).all() and (complete["sessions"] == 1).all()
    assert complete[["final", "max", "wall_s", "objective_std"]].notna().all().all()


def colours(path: Path) -> tuple[tuple, int, int]:
    """(shape, distinct colours, distinct saturated colours: drawn data, not text or grid)."""
    img = matplotlib.image.imread(path)
    rgb = (img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    saturated = rgb[(rgb.max(1).astype(int) - rgb.min(1)) > 60]
    return img.shape, len(np.unique(rgb, axis=0)), len(np.unique(saturated, axis=0))


@pytest.mark.parametrize("name", GRAPHS)
def test_graph_is_an_image_with_plotted_data(sweep, name):
    shape, distinct, saturated = colours(sweep / name)
    assert shape[0] >= 300 and shape[1] >= 500
    assert distinct > 100
    assert saturated >= 5, f"{name} shows no coloured data"


def test_importance_ranks_every_searched_parameter(sweep):
    imp = yaml.safe_load((sweep / "importance.yaml").read_text())
    assert imp["evaluator"] == "ped_anova"
    assert imp["complete_trials"] == 3
    assert [e["param"] for e in imp["importance"]].count("algo.gamma") == 1
    assert sorted(e["param"] for e in imp["importance"]) == sorted(SEARCHED)
    ranked = [e["importance"] for e in imp["importance"] if e["importance"] is not None]
    assert len(ranked) >= 3 and ranked == sorted(ranked, reverse=True)
    assert sum(ranked) == pytest.approx(1.0)
    # val_loss_coef is 0.5 in every complete trial (3e38 failed or was rejected): nothing to rank
    coef = next(e for e in imp["importance"] if e["param"] == "algo.val_loss_coef")
    assert coef["importance"] is None and "constant" in coef["why"]
    df = pd.read_csv(sweep / "experiment_df.csv")
    assert [c["trial"] for c in imp["top_configurations"]] == list(df["trial"][:3])
    best = imp["top_configurations"][0]
    assert best["params"]["algo.gamma"] == pytest.approx(df.loc[0, "algo.gamma"])
    gamma = next(e for e in imp["importance"] if e["param"] == "algo.gamma")
    assert gamma["best_value"] == pytest.approx(df.loc[0, "algo.gamma"])


def test_cli_with_fanova(sweep, tmp_path):
    proc = run_cli("analyze", sweep, "--evaluator", "fanova", timeout=120)
    try:
        assert proc.returncode == 0, proc.stderr
        assert "python -m rlhp.train --config-dir" in proc.stdout
        imp = yaml.safe_load((sweep / "importance.yaml").read_text())
        try:
            import sklearn  # noqa: F401  (optuna's fANOVA needs it; rlhp does not install it)

            assert imp["evaluator"] == "fanova"
        except ImportError:
            assert imp["evaluator"] == "ped_anova" and "scikit-learn" in imp["note"]
        assert sorted(e["param"] for e in imp["importance"]) == sorted(SEARCHED)
    finally:  # the other tests read the default analysis
        analyze(sweep, strict=True)


def test_best_yaml_trains_with_the_printed_command(sweep, tmp_path, rlhp_cli):
    text = (sweep / "best.yaml").read_text()
    line = next(ln for ln in text.splitlines() if "--config-name best" in ln)
    cmd = shlex.split(line.lstrip("# "))
    assert cmd[:3] == ["python", "-m", "rlhp.train"]
    run = tmp_path / "run"
    proc = rlhp_cli(*cmd[3:], "env.max_frame=256", "log_frequency=128", run_dir=run, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "result.yaml").is_file()
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    best = pd.read_csv(sweep / "experiment_df.csv").iloc[0]
    assert cfg["algo"]["gamma"] == pytest.approx(best["algo.gamma"])
    assert cfg["algo"]["entropy_coef"] == pytest.approx(best["algo.entropy_coef"])
    assert cfg["algo"]["training_epoch"] == best["algo.training_epoch"]
    assert str(cfg["algo"]["hid_layers"]).replace(" ", "") == best["algo.hid_layers"]
    # and the next best ones
    ranks = sorted(p.name for p in (sweep / "top_k").glob("*.yaml"))
    assert ranks == ["rank2.yaml", "rank3.yaml"]
    rank2 = yaml.safe_load((sweep / "top_k" / "rank2.yaml").read_text())
    second = pd.read_csv(sweep / "experiment_df.csv").iloc[1]
    assert rank2["algo"]["gamma"] == pytest.approx(second["algo.gamma"])


def hparams_plugin(logdir: Path):
    """TensorBoard's own HParams plugin over its event multiplexer; returns call(route, body)."""
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import hparams_plugin as hp
    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    ctx = base_plugin.TBContext(logdir=str(logdir), multiplexer=mux, data_provider=provider)
    apps = hp.HParamsPlugin(ctx).get_plugin_apps()

    def call(route: str, body: dict) -> dict:
        client = Client(apps[route], Response)
        reply = client.post(route, data=json.dumps(body), content_type="application/json")
        assert reply.status_code == 200, reply.get_data()
        return json.loads(reply.get_data())

    return call


def test_tensorboard_lists_every_trial_with_its_hparams(sweep):
    call = hparams_plugin(sweep)
    exp = call("/experiment", {"experimentName": ""})
    infos = {h["name"]: h for h in exp["hparamInfos"]}
    # the searched parameters first (`differs`: the dashboard shows them), then the fixed values
    names = [h["name"] for h in exp["hparamInfos"]]
    assert sorted(names[: len(SEARCHED)]) == sorted(SEARCHED)
    assert all(infos[n].get("differs") for n in SEARCHED)
    assert {"seed", "env", "algo.name"} <= set(names[len(SEARCHED) :])
    assert not any(infos[n].get("differs") for n in names[len(SEARCHED) :])
    assert infos["algo.gamma"]["domainInterval"] == {"minValue": 0.9, "maxValue": 0.999}
    assert sorted(infos["algo.hid_layers"]["domainDiscrete"]) == ["[32, 32]", "[64, 64]"]
    metrics = [m["name"]["tag"] for m in exp["metricInfos"]]
    assert metrics[0] == "hparams/objective"
    # what the dashboard asks for: every column filtered by its domain
    cols = []
    for h in exp["hparamInfos"]:
        col = {"hparam": h["name"], "includeInResult": True}
        if "domainDiscrete" in h:
            col["filterDiscrete"] = h["domainDiscrete"]
        elif "domainInterval" in h:
            col["filterInterval"] = h["domainInterval"]
        cols.append(col)
    cols += [{"metric": m["name"], "includeInResult": True} for m in exp["metricInfos"]]
    groups = call(
        "/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
            "colParams": cols,
            "startIndex": 0,
            "sliceSize": 1000,
        },
    )["sessionGroups"]
    df = pd.read_csv(sweep / "experiment_df.csv").set_index("trial")
    complete = sorted(df.index[df["state"] == "complete"])
    # one row per trial, named by it; its session is the run of its scalars
    assert sorted(int(g["name"]) for g in groups) == complete
    for g in groups:
        assert [s["name"] for s in g["sessions"]] == [f"{g['name']}/session0"]
        row = df.loc[int(g["name"])]
        for name in (
            "algo.gamma",
            "algo.entropy_coef",
            "algo.training_epoch",
            "algo.val_loss_coef",
        ):
            assert g["hparams"][name] == pytest.approx(row[name])
        assert g["hparams"]["algo.hid_layers"].replace(" ", "") == row["algo.hid_layers"]
        values = {m["name"]["tag"]: m["value"] for m in g["metricValues"]}
        assert values["hparams/objective"] == pytest.approx(row["objective"], rel=1e-5)


def test_a_killed_search_is_analysed_with_its_running_trials(conf_dir, tmp_path):
    sweep = tmp_path / "sweep"
    # long trials: the search is killed while its first trials train
    args = [*search_args(conf_dir), "env.max_frame=200000", "hydra.sweeper.prior=false"]
    log = tmp_path / "search.log"
    proc = start_sweep(sweep, *args, log=log)
    try:
        wait_for(lambda: list(sweep.glob("*/metrics.csv")), proc, 180, "a trial to log", log)
    finally:
        kill_group(proc)
    out = run_cli("analyze", sweep, timeout=120)
    assert out.returncode == 0, out.stderr
    df = pd.read_csv(sweep / "experiment_df.csv")
    running = {t.number for t in load_study(sweep).trials if t.state == TrialState.RUNNING}
    assert running and set(df.loc[df["state"] == "running", "trial"]) == running
    logged = {int(p.parent.name) for p in sweep.glob("*/metrics.csv")}
    rows = df.set_index("trial").loc[sorted(logged & running)]
    assert (rows["frame"] > 0).all() and rows["final"].notna().all()
    assert "no complete trial yet" in out.stdout
    for name in GRAPHS:
        assert colours(sweep / name)[1] > 50
    assert not (sweep / "best.yaml").exists()


# -- made-up studies: every state, and too few trials


def fake_sweep(path: Path, specs: list[dict], direction: str = "maximize") -> Path:
    """A sweep dir with a journal study and metrics.csv files, as the sweeper writes them."""
    path.mkdir(parents=True)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path / "study.journal"))
    )
    study = optuna.create_study(study_name="rlhp", storage=storage, direction=direction)
    dists = {
        "algo.lr": FloatDistribution(1e-5, 1e-2, log=True),
        "algo.training_epoch": IntDistribution(1, 8),
        "algo.hid_layers": CategoricalDistribution(["[32,32]", "[64,64]"]),
    }
    rng = np.random.default_rng(0)
    for i, spec in enumerate(specs):
        params = {
            "algo.lr": float(10 ** rng.uniform(-5, -2)),
            "algo.training_epoch": int(rng.integers(1, 9)),
            "algo.hid_layers": ["[32,32]", "[64,64]"][i % 2],
        }
        state, value = spec["state"], spec.get("value")
        attrs = dict(spec.get("attrs", {}))
        inter = {}
        if state == TrialState.PRUNED:
            attrs["stopped_at"] = spec["stop"]
            inter = {spec["stop"]: value}
        study.add_trial(
            create_trial(
                state=state,
                value=value if state == TrialState.COMPLETE else None,
                params=params,
                distributions=dists,
                user_attrs=attrs,
                intermediate_values=inter,
            )
        )
        end = spec.get("stop") or spec.get("until") or (5000 if value is not None else 0)
        if end:
            frames = np.arange(500, end + 1, 500)
            top = value if value is not None else 20.0
            curve = top * (frames / end) ** 0.7 + rng.normal(0, 1, len(frames))
            (path / str(i)).mkdir()
            pd.DataFrame(
                {"session": 0, "frame": frames, "total_reward_ma": curve, "wall_s": frames / 1e3}
            ).to_csv(path / str(i) / "metrics.csv", index=False)
    return path


EVERY_STATE = [
    {"state": TrialState.COMPLETE, "value": 150.0, "attrs": {"std": 5.0, "sessions": 2}},
    {"state": TrialState.PRUNED, "value": 60.0, "stop": 1500},
    {"state": TrialState.COMPLETE, "value": 300.0},
    {"state": TrialState.FAIL, "attrs": {"error": "FloatingPointError: PPO loss is nan"}},
    {"state": TrialState.FAIL, "attrs": {"rejected": "algo.lr > 1e-3"}},
    {"state": TrialState.RUNNING, "until": 2000},
    {"state": TrialState.PRUNED, "value": 80.0, "stop": 3000},
    {"state": TrialState.COMPLETE, "value": 220.0},
    {"state": TrialState.WAITING},
    {"state": TrialState.COMPLETE, "value": 90.0},
]


def test_every_state_in_order(tmp_path):
    sweep = fake_sweep(tmp_path / "sweep", EVERY_STATE)
    analyze(sweep, strict=True)
    df = pd.read_csv(sweep / "experiment_df.csv")
    assert list(df["trial"]) == [2, 7, 0, 9, 6, 1, 5, 8, 3, 4]
    assert list(df["state"]) == (
        ["complete"] * 4
        + ["stopped@3000", "stopped@1500", "running", "waiting", "failed", "rejected"]
    )
    assert list(df["rank"][:6]) == [1, 2, 3, 4, 5, 6] and df["rank"][6:].isna().all()
    assert list(df["objective"][:6]) == [300.0, 220.0, 150.0, 90.0, 80.0, 60.0]
    assert df.loc[df["trial"] == 5, "frame"].item() == 2000  # running: from metrics.csv
    assert df.loc[df["trial"] == 0, "objective_std"].item() == 5.0
    for name in GRAPHS:
        assert colours(sweep / name)[2] >= 5
    assert yaml.safe_load((sweep / "importance.yaml").read_text())["complete_trials"] == 4


def test_minimize_puts_the_lowest_first(tmp_path):
    specs = [{"state": TrialState.COMPLETE, "value": v} for v in (3.0, 1.0, 2.0)]
    df = experiment_df(load(fake_sweep(tmp_path / "sweep", specs, direction="minimize")))
    assert list(df["objective"]) == [1.0, 2.0, 3.0]


def test_too_few_trials_for_importance_says_why(tmp_path):
    sweep = fake_sweep(tmp_path / "sweep", EVERY_STATE[:2])  # one complete, one stopped
    analyze(sweep, strict=True)
    imp = yaml.safe_load((sweep / "importance.yaml").read_text())
    assert "at least 2 complete trials" in imp["note"]
    assert sorted(e["param"] for e in imp["importance"]) == sorted(
        ["algo.lr", "algo.training_epoch", "algo.hid_layers"]
    )
    assert all(e["importance"] is None for e in imp["importance"])
    assert (sweep / "importance.png").is_file()


def test_not_a_sweep_dir(tmp_path):
    proc = run_cli("analyze", tmp_path, timeout=60)
    assert proc.returncode == 1 and "holds no study" in proc.stderr
    assert not (tmp_path / "study.journal").exists()


# -- best-history, --metric, --compare, validation.png (issue 15)


@pytest.fixture
def sweep_copy(sweep, tmp_path) -> Path:
    """A copy of the real search that a test may rewrite."""
    import shutil

    return Path(shutil.copytree(sweep, tmp_path / "sweep"))


def test_a_read_only_sweep_is_analysed_to_stdout_with_one_line_per_unwritten_output(
    sweep, tmp_path
):
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)]
    if (made := subprocess.run(mount, capture_output=True, text=True)).returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        shutil.copytree(sweep, disk / "sweep")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        proc = run_cli("analyze", disk / "sweep", timeout=120)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert proc.returncode == 1, output(proc)
    assert "Traceback" not in proc.stdout + proc.stderr, output(proc)
    outputs = ["experiment_df.csv", "info/*_experiment_df.csv", "best.yaml", "importance.yaml"]
    outputs += GRAPHS
    outputs.append("the TensorBoard HParams summary")
    error = f"rlhp.analyze: error: cannot write {{}} in {disk / 'sweep'}: Read-only file system"
    assert proc.stderr.splitlines() == [error.format(o) for o in outputs], output(proc)
    # what could be computed is printed: the best trial and the table, best first
    df = pd.read_csv(sweep / "experiment_df.csv")
    assert f"best: trial {df.loc[0, 'trial']}, objective" in proc.stdout, output(proc)
    (header,) = [
        ln.split() for ln in proc.stdout.splitlines() if ln.split()[:2] == ["trial", "rank"]
    ]
    assert {"state", "objective", *SEARCHED} <= set(header)
    assert "wrote nothing" in proc.stdout, output(proc)


def test_experiment_df_keeps_slm_labs_total_reward_ma(sweep):
    df = pd.read_csv(sweep / "experiment_df.csv")
    cols = list(df.columns)
    assert cols.index("total_reward_ma") == cols.index("objective_std") + 1
    complete = df[df["state"] == "complete"]
    assert complete["total_reward_ma"].notna().all()
    assert (complete["total_reward_ma"] == complete["final"]).all()


def test_best_history_judges_rerun_configurations_by_their_mean():
    def run(number, value, lr):
        t = create_trial(
            value=value,
            params={"algo.lr": lr},
            distributions={"algo.lr": CategoricalDistribution([1, 2, 3])},
        )
        t.number = number
        return t

    from rlhp.analysis import best_history

    # a: 10, b: 12 (best), a again: 15 -> a's mean 12.5 beats b's 12; c: 20 once; a: 9
    trials = [run(0, 10, 1), run(1, 12, 2), run(2, 15, 1), run(3, 20, 3), run(4, 9, 1)]
    steps = best_history(trials, maximize=True)
    assert [(s.best, s.runs, s.held) for s in steps] == [
        (0, 1, 1),
        (1, 1, 1),
        (0, 2, 1),
        (3, 1, 1),
        (3, 1, 2),
    ]
    assert steps[2].estimate == pytest.approx(12.5)
    assert [s.run for s in steps] == [1, 2, 3, 4, 5]
    assert best_history(trials, maximize=False)[-1].best == 0  # a: (10+15+9)/3 = 11.33 < 12


def test_history_cli_prints_the_best_after_each_run(sweep_copy):
    proc = run_cli("analyze", sweep_copy, "--history")
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout[proc.stdout.index(" run ") :].splitlines()
    header, rows = table[0].split(), [ln.split() for ln in table[1:]]
    assert header[:7] == ["run", "trial", "value", "best", "runs", "estimate", "held"]
    complete = [t for t in load_study(sweep_copy).trials if t.state == TrialState.COMPLETE]
    assert len(rows) == len(complete) == 3
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    # each run's own value, and the best's estimate never below (maximize) the best single run
    by_number = {t.number: t.value for t in complete}
    for r in rows:
        assert float(r[2]) == pytest.approx(by_number[int(r[1])], rel=1e-3)
    best = max(complete, key=lambda t: t.value)  # every configuration ran once here
    assert int(rows[-1][3]) == best.number and int(rows[-1][4]) == 1
    shape, _, saturated = colours(sweep_copy / "best_history.png")
    assert shape[1] >= 500 and saturated >= 5


def test_metric_and_sort_rank_on_another_recorded_metric(sweep_copy):
    proc = run_cli("analyze", sweep_copy, "--metric", "wall_s", "--sort", "asc")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(sweep_copy / "experiment_df.csv")
    complete = df[df["state"] == "complete"]
    assert complete["wall_s"].is_monotonic_increasing
    assert list(complete["rank"]) == [1, 2, 3]
    best = yaml.safe_load((sweep_copy / "importance.yaml").read_text())["top_configurations"][0]
    assert best["trial"] == complete["trial"].iloc[0]
    # a metrics.csv key that is not a column: its last value, mean over sessions
    proc = run_cli("analyze", sweep_copy, "--metric", "fps", "--sort", "desc")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(sweep_copy / "experiment_df.csv")
    assert df[df["state"] == "complete"]["fps"].is_monotonic_decreasing
    proc = run_cli("analyze", sweep_copy, "--metric", "no_such_metric")
    assert proc.returncode == 1
    assert proc.stderr.startswith("rlhp.analyze: error: no trial recorded 'no_such_metric'")


def test_compare_puts_searches_side_by_side(sweep, sweep_copy, tmp_path):
    other = sweep_copy.parent / "other"
    sweep_copy.rename(other)
    out = tmp_path / "cmp.png"
    proc = run_cli("analyze", sweep, other, "--compare", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert str(sweep) in proc.stdout and str(other) in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(str(sweep)))
    assert line.split()[1:3] == [str(len(load_study(sweep).trials)), "3"]  # trials, complete
    shape, _, saturated = colours(out)
    assert shape[1] >= 800 and saturated >= 2  # two lines (here on top of each other)
    proc = run_cli("analyze", sweep, other)
    assert proc.returncode == 1 and "--compare" in proc.stderr


def test_validation_png_after_validate(sweep_copy, conf_dir):
    proc = run_cli("validate", sweep_copy, "top_k=2", "max_session=2", cwd=sweep_copy.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli("analyze", sweep_copy)
    assert proc.returncode == 0, proc.stderr
    shape, _, saturated = colours(sweep_copy / "validation.png")
    assert shape[1] >= 1000 and saturated >= 5
