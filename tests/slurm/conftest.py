"""The local SLURM cluster (slurm/cluster.sh: slurmctld, slurmd, slurmdbd, munge, two fake
GPUs) the tests marked `slurm` search through."""

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from _helpers import ONE_LONG_TRIAL, run_search

CLUSTER = Path(__file__).resolve().parents[2] / "slurm" / "cluster.sh"


@pytest.fixture(scope="session")
def slurm_env():
    """SLURM_CONF of a running local cluster; started here (and stopped after) if none runs."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    started = False
    if "SLURM_CONF" not in env:
        knobs = dict(env, SLURM_LOCAL_CPUS="8", SLURM_LOCAL_GPUS="2", SLURM_LOCAL_CLEAN="1")
        subprocess.run(["bash", str(CLUSTER), "start"], env=knobs, check=True)
        started = True
        out = subprocess.run(["bash", str(CLUSTER), "env"], capture_output=True, text=True)
        env["SLURM_CONF"] = out.stdout.strip().split("=", 1)[1]
    yield env
    if started:
        subprocess.run(["bash", str(CLUSTER), "stop"], env=env, check=False)


@pytest.fixture(scope="session")
def long_trial_search(slurm_env, tmp_path_factory) -> Callable[[Path, bool], Path]:
    """copy(sweep_dir, requeue) -> sweep_dir: a copy of the finished search of ONE_LONG_TRIAL with
    that hydra.sweeper.requeue, run once per setting for the tests that validate it."""
    done: dict[bool, Path] = {}

    def copy(sweep_dir: Path, requeue: bool) -> Path:
        if requeue not in done:
            done[requeue] = tmp_path_factory.mktemp("long_trial") / "sweep"
            setting = f"hydra.sweeper.requeue={str(requeue).lower()}"
            run_search(slurm_env, done[requeue], *ONE_LONG_TRIAL, setting)
        shutil.copytree(done[requeue], sweep_dir)
        return sweep_dir

    return copy
