"""rlhp.validate: the top configurations of a real search re-run with fresh seeds."""

import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from sweep._cli import cli_env, default_sigint, output, run_cli, run_sweep

from rlhp.analysis import experiment_df
from rlhp.record import load
from rlhp.slurm import executor, trial_params, trial_requeue
from rlhp.validate import _seed, run_overrides, validate

TOP_K, SESSIONS = 2, 2


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Path:
    """A real 3-trial search."""
    root = tmp_path_factory.mktemp("validate")
    sweep = root / "sweep"
    proc = run_sweep(
        sweep,
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.max_concurrent=2",
        "hydra/sweeper/sampler=random",
        "hydra.sweeper.sampler.seed=1",
        "env.max_frame=1024",
        "log_frequency=256",
        "algo.gamma=interval(0.9, 0.999)",
        "algo.training_epoch=int(interval(2, 6))",
        timeout=300,
    )
    assert proc.returncode == 0, output(proc)
    return sweep


@pytest.fixture(scope="session")
def validated(sweep) -> tuple[Path, pd.DataFrame, str]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        df = validate(sweep, top_k=TOP_K, max_session=SESSIONS, slots=2)
    return sweep, df, out.getvalue()


def search_seeds(sweep: Path) -> set[int]:
    seeds = set()
    for cfg in sweep.glob("[0-9]*/.hydra/config.yaml"):
        c = yaml.safe_load(cfg.read_text())
        seeds.update(range(c["seed"], c["seed"] + c["max_session"]))
    return seeds


def test_the_top_k_are_re_run_with_fresh_seeds_and_no_early_stopping(validated):
    sweep, df, _ = validated
    table = experiment_df(load(sweep))
    top = list(table.loc[table["state"] == "complete", "trial"][:TOP_K])
    assert sorted(df["trial"]) == sorted(top)
    used = search_seeds(sweep)
    runs = {}
    for number in top:
        run = sweep / "validation" / f"trial{number}"
        cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        result = yaml.safe_load((run / "result.yaml").read_text())
        seeds = set(range(cfg["seed"], cfg["seed"] + cfg["max_session"]))
        assert not seeds & used, "validation reused a search seed"
        assert all(not seeds & other for other in runs.values())
        runs[number] = seeds
        assert cfg["max_session"] == SESSIONS and cfg["meta"]["search_scheduler"] is None
        assert len(result["sessions"]) == SESSIONS and result["state"] == "complete"
        # the same configuration as the search's trial
        trial_cfg = yaml.safe_load((sweep / str(number) / ".hydra" / "config.yaml").read_text())
        assert cfg["algo"] == trial_cfg["algo"] and cfg["env"] == trial_cfg["env"]
        row = df.set_index("trial").loc[number]
        assert row["validated_mean"] == pytest.approx(result["objective"])
        assert row["validated_std"] == pytest.approx(result["objective_std"])
        assert row["search_score"] == pytest.approx(
            table.set_index("trial").loc[number, "objective"]
        )
        assert row["seeds"] == f"{min(seeds)}-{max(seeds)}"
    # each run was a local job of the search's job layer (submitit), whose command exited 0
    jobs = (sweep / "validation" / ".submitit").glob("*/*_result.pkl")
    runs = len(list(sweep.glob("validation/*/result.yaml")))  # TOP_K, or one more after resume
    assert [pickle.loads(p.read_bytes()) for p in jobs] == [("success", 0)] * runs


def test_validation_csv_ranks_by_validated_score(validated):
    sweep, df, out = validated
    csv = pd.read_csv(sweep / "validation.csv")
    assert list(csv["trial"]) == list(df["trial"])
    assert csv["validated_mean"].is_monotonic_decreasing
    assert list(csv["rank"]) == list(range(1, TOP_K + 1))
    assert sorted(csv["search_rank"]) == list(range(1, TOP_K + 1))
    bias = csv["search_score"] - csv["validated_mean"]
    assert csv["bias"].to_numpy() == pytest.approx(bias.to_numpy())
    # the final best is the validated one, and it says so
    best = int(csv.loc[0, "trial"])
    text = (sweep / "best_validated.yaml").read_text()
    assert f"after validation: trial {best}" in text
    cfg = yaml.safe_load(text)
    assert (
        cfg["algo"]
        == yaml.safe_load((sweep / str(best) / ".hydra" / "config.yaml").read_text())["algo"]
    )
    top = csv.loc[csv["search_rank"] == 1].iloc[0]
    assert f"selection bias of the search's best (trial {int(top['trial'])}): " in out
    assert f"{top['bias']:+.4g}" in out
    assert f"mean selection bias over the top {TOP_K}: {bias.mean():+.4g}" in out
    # experiment_df.csv shows the validated scores beside the search's
    table = pd.read_csv(sweep / "experiment_df.csv").set_index("trial")
    assert table.loc[best, "validated_mean"] == pytest.approx(csv.loc[0, "validated_mean"])


def test_running_it_again_resumes(validated):
    sweep, df, _ = validated
    before = {p: p.stat().st_mtime_ns for p in sweep.glob("validation/*/result.yaml")}
    assert len(before) == TOP_K
    # one more configuration: only that one runs (asked with the old name of max_session)
    proc = run_cli("validate", sweep, f"top_k={TOP_K + 1}", "sessions=2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"1 to run ({TOP_K} done before)" in proc.stdout
    # the name before max_session still works, with one deprecation line
    assert "rlhp.validate: warning: sessions= is deprecated; use max_session=" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert len(list(sweep.glob("validation/*/result.yaml"))) == TOP_K + 1
    assert len(pd.read_csv(sweep / "validation.csv")) == TOP_K + 1
    # a local search is validated locally
    assert "SLURM" not in proc.stdout and trial_params(sweep / "0") is None


@pytest.mark.parametrize(
    "signum, says",
    [
        (signal.SIGTERM, "stopped by SIGTERM; run the same command to resume"),
        (signal.SIGINT, "interrupted; run the same command to resume"),
    ],
)
def test_a_stop_ends_the_runs_and_the_same_command_resumes(sweep, tmp_path, signum, says):
    """SIGTERM, or Ctrl+C (SIGINT to the whole process group, as a terminal sends it), ends
    every running validation job, none left training; the same command resumes each run from its
    checkpoint."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("validation*"))
    number = int(experiment_df(load(copy)).iloc[0]["trial"])
    overrides = copy / str(number) / ".hydra" / "overrides.yaml"
    longer = [o for o in yaml.safe_load(overrides.read_text()) if not o.startswith("env.max_frame")]
    overrides.write_text(yaml.safe_dump([*longer, "env.max_frame=12288"]))  # a longer run
    cmd = [sys.executable, "-m", "rlhp.validate", str(copy), "top_k=1", "max_session=2"]
    proc = subprocess.Popen(
        cmd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=default_sigint,
    )
    run_dir = copy / "validation" / f"trial{number}"
    while not list(run_dir.glob("checkpoints/*")) and proc.poll() is None:
        time.sleep(0.2)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    out, err = (s.decode() for s in proc.communicate(timeout=120))
    assert proc.returncode == 128 + signum, out + err
    assert says in err, err
    assert f"trial {number} (seeds" in out and "stopped at a checkpoint" in out, out
    assert not (run_dir / "result.yaml").exists()
    assert "job Error" not in (run_dir / "validate.log").read_text()  # a stop, not a failure
    left = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True)
    assert left.stdout == "", "a validation run still trains after the stop"
    stopped_at = frames(run_dir)
    assert 0 < max(f for _, f in stopped_at) < 12288

    again = run_cli("validate", copy, "top_k=1", "max_session=2")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    seen = frames(run_dir)
    for session in (0, 1):  # resumed: the rows before the stop kept, none written twice
        rows = [f for s, f in seen if s == session]
        assert rows == sorted(set(rows)) and rows[-1] >= 12288, rows
        assert {f for s, f in stopped_at if s == session} <= set(rows)


def frames(run_dir: Path) -> list[tuple[int, int]]:
    """(session, frame) of each row of a run's metrics.csv."""
    df = pd.read_csv(run_dir / "metrics.csv")
    return list(zip(df["session"], df["frame"], strict=True))


def test_nothing_to_validate(tmp_path):
    proc = run_cli("validate", tmp_path, "top_k=2", timeout=60)
    assert proc.returncode == 1 and "holds no study" in proc.stderr


def test_run_overrides_replace_seed_sessions_and_scheduler(tmp_path):
    trial = tmp_path / "7" / ".hydra"
    trial.mkdir(parents=True)
    overrides = [
        "+search=ppo_cartpole",
        "seed=3",
        "max_session=1",
        "meta.search_scheduler={grace_period: 1000, reduction_factor: 3}",
        "algo.lr=0.001",
        "algo.hid_layers=[64,64]",
    ]
    (trial / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra = {
        "runtime": {
            "config_sources": [
                {"path": "/work/main/conf", "schema": "file", "provider": "main"},
                {"path": "/my/conf", "schema": "file", "provider": "command-line"},
            ]
        },
        "job": {"config_name": "config"},
    }
    from omegaconf import OmegaConf

    sweep = SimpleNamespace(
        dir=tmp_path,
        hydra=OmegaConf.create(hydra),
        trials=[SimpleNamespace(number=7)],
        trial_dir=lambda n: tmp_path / str(n),
    )
    got = run_overrides(sweep, 7, seed=10_004, max_session=4)
    assert got == [
        "--config-dir",
        "/my/conf",
        "+search=ppo_cartpole",
        "algo.lr=0.001",
        "algo.hid_layers=[64,64]",
        "seed=10004",
        "max_session=4",
        "meta.search_scheduler=null",
        f"hydra.run.dir={tmp_path}/validation/trial7",
    ]
    # the search used seeds 10000..10003: validation starts above them
    assert _seed(sweep, 7, 4, {10_000, 10_001, 10_002, 10_003}) == 10_004 + 7 * 4
    assert _seed(sweep, 7, 4, {0}) == 10_000 + 7 * 4


SLURM_LAUNCHER = {  # a trial's .hydra/hydra.yaml after `+cluster=slurm` (as Hydra saves it)
    "submitit_folder": "${hydra.sweep.dir}/.submitit/%j",
    "timeout_min": "${meta.search_resources.time_min}",
    "cpus_per_task": "${meta.search_resources.cpu}",
    "gpus_per_node": None,
    "tasks_per_node": 1,
    "mem_gb": "${meta.search_resources.mem_gb}",
    "nodes": 1,
    "name": "${hydra.job.name}",
    "_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
    "partition": "gpu",
    "qos": None,
    "signal_delay_s": 120,
    "max_num_timeout": 5,
    "python": None,
    "additional_parameters": {"account": "proj"},
    "setup": ["module load cuda/12.4"],
    "srun_args": None,
    "use_srun": True,
}


def trial_dir(tmp_path: Path, launcher: dict, gpu: float) -> Path:
    run = tmp_path / "3"
    (run / ".hydra").mkdir(parents=True)
    hydra = {"job": {"name": "train"}, "sweep": {"dir": "${now:%Y}"}, "launcher": launcher}
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    resources = {"cpu": 2, "gpu": gpu, "mem_gb": 4, "time_min": 60}
    config = {"seed": 0, "meta": {"search_resources": resources}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.mark.parametrize("gpu, gpus", [(0.125, 1), (2, 2), (0, None)])
def test_slurm_params_are_a_trials_resources_with_whole_gpus(tmp_path, gpu, gpus):
    from submitit.slurm.slurm import _make_sbatch_string

    params = trial_params(trial_dir(tmp_path, SLURM_LAUNCHER, gpu))
    assert params["cpus_per_task"] == 2 and params["mem_gb"] == 4 and params["timeout_min"] == 60
    assert params["gpus_per_node"] == gpus
    slurm = executor(dict(params, name="rlhp_validate3"), tmp_path / "%j")._executor
    assert slurm.max_num_timeout == 5
    script = _make_sbatch_string(command="x", folder=tmp_path / "%j", **slurm.parameters)
    lines = set(script.splitlines())
    expected = ["--partition=gpu", "--cpus-per-task=2", "--mem=4GB", "--time=60"]
    expected += ["--signal=USR2@120", "--account=proj", "--job-name=rlhp_validate3"]
    assert {f"#SBATCH {e}" for e in expected} <= lines and "module load cuda/12.4" in lines
    assert (f"#SBATCH --gpus-per-node={gpus}" in lines) == (gpus is not None)


@pytest.mark.parametrize("sweeper, requeue", [({"requeue": True}, True), ({}, False)])
def test_validation_jobs_are_requeued_as_the_searchs_trials_were(tmp_path, sweeper, requeue):
    run = trial_dir(tmp_path, SLURM_LAUNCHER, 0)
    hydra = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())
    hydra["hydra"]["sweeper"] = sweeper
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    assert trial_requeue(run) is requeue
    assert trial_requeue(tmp_path / "no_trial") is False


def test_a_trial_of_another_launcher_is_validated_here(tmp_path):
    launcher = {"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"}
    assert trial_params(trial_dir(tmp_path, launcher, 0)) is None
