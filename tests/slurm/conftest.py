"""The local SLURM cluster (slurm/cluster.sh: slurmctld, slurmd, slurmdbd, munge, two fake
GPUs) the tests marked `slurm` search through."""

import os
import subprocess
from pathlib import Path

import pytest

CLUSTER = Path(__file__).resolve().parents[2] / "slurm" / "cluster.sh"


@pytest.fixture(scope="module")
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
