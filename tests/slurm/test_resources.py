"""The check of meta.search_resources against sinfo's nodes (no SLURM needed)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlhp.errors import ConfigError
from rlhp.slurm import gpu_request, preempted, transient
from rlhp.sweep._slurm import (
    PREEMPTED,
    TERMINATED,
    gpu_types,
    job_request,
    outcome,
    parse_sinfo,
    slots,
    unmet,
)
from rlhp.validate import launcher_args

SINFO = """cpu*|(null)|64000|32
gpu|gpu:a100:4(S:0-1)|256000+|64
small|gpu:2,shard:8|16000|8
"""


def nodes(partition):
    return [n[1:] for n in parse_sinfo(SINFO) if n[0] == partition]


def test_parse_sinfo():
    assert parse_sinfo(SINFO) == [
        ("cpu", 0, 64000, 32),
        ("gpu", 4, 256000, 64),
        ("small", 2, 16000, 8),
    ]


def test_job_request():
    # a packed host job: 8 trials of 1 CPU and 4 GB on one GPU
    assert job_request({"cpu": 1, "gpu": 0.125, "mem_gb": 4}) == (1, 32, 8, 8)
    assert job_request({"cpu": 2, "gpu": 2, "mem_gb": 8}) == (2, 8, 2, 1)
    assert job_request({"cpu": 1, "gpu": 0, "mem_gb": 4}) == (0, 4, 1, 1)


@pytest.mark.parametrize(
    ("partition", "resources"),
    [
        ("gpu", {"cpu": 1, "gpu": 0.125, "mem_gb": 4}),
        ("cpu", {"cpu": 4, "gpu": 0, "mem_gb": 8}),
        ("small", {"cpu": 1, "gpu": 0.25, "mem_gb": 3.5}),  # 4 x 3.5 GB on 16000 MB
    ],
)
def test_requests_that_fit(partition, resources):
    assert unmet(resources, nodes(partition)) is None


@pytest.mark.parametrize(
    ("partition", "resources", "words"),
    [
        ("cpu", {"cpu": 1, "gpu": 0.125, "mem_gb": 4}, ["no node has a GPU", "gpu=0"]),
        ("small", {"cpu": 1, "gpu": 4, "mem_gb": 4}, ["4 GPUs", "most on one node is 2", "gpu=2"]),
        (
            "small",
            {"cpu": 1, "gpu": 0.125, "mem_gb": 4},
            ["host job of 8 trials", "32 GB", "15.6", "mem_gb=1.9", "fewer trials per GPU"],
        ),
        ("small", {"cpu": 2, "gpu": 0.125, "mem_gb": 1}, ["16 CPUs", "has 8", "cpu=1"]),
        ("cpu", {"cpu": 1, "gpu": 0, "mem_gb": 100}, ["a trial job", "100 GB", "mem_gb=62.5"]),
    ],
)
def test_requests_that_cannot_fit_say_what_to_change(partition, resources, words):
    problem = unmet(resources, nodes(partition))
    assert problem is not None
    for word in words:
        assert word in problem


@pytest.mark.parametrize(
    ("gres", "gpus", "asked"),
    [
        (None, 2, {"gpus_per_node": 2}),
        (None, 0, {"gpus_per_node": None}),
        ("gpu:a100", 2, {"gres": "gpu:a100:2", "gpus_per_node": None}),
        ("gpu:a100:1", 1, {"gres": "gpu:a100:1", "gpus_per_node": None}),
        ("shard:2,gpu:h100", 1, {"gres": "gpu:h100:1,shard:2", "gpus_per_node": None}),
    ],
)
def test_one_gpu_request_per_job(gres, gpus, asked):
    assert gpu_request(gres, gpus) == asked


def test_gpu_types():
    assert gpu_types(SINFO, "gpu") == {"a100"}
    assert gpu_types(SINFO, "small") == set()  # untyped GPUs
    assert gpu_types(SINFO, None) == {"a100"}


@pytest.mark.parametrize(("gres", "gpus"), [("gpu:a100:4", 1), ("gpu:a100", 0)])
def test_a_gres_that_contradicts_the_trials_gpus_is_refused(gres, gpus):
    with pytest.raises(ConfigError, match="meta.search_resources.gpu"):
        gpu_request(gres, gpus)


@pytest.mark.parametrize(
    ("max_concurrent", "parallelism", "n_trials", "expected", "warns"),
    [
        (None, 256, 500, 8, True),  # bounded by default, with a warning
        (None, 256, 5, 5, False),
        (None, 20, 500, 20, False),  # hydra.launcher.array_parallelism is the slot count
        (32, 256, 500, 32, False),
        (32, 4, 500, 4, True),  # and caps max_concurrent
    ],
)
def test_slurm_slots(max_concurrent, parallelism, n_trials, expected, warns):
    count, note = slots(max_concurrent, parallelism, n_trials)
    assert count == expected and bool(note) == warns


def test_refusals_that_pass():
    assert transient("QOSMaxSubmitJobPerUserLimit; Batch job submission failed: Job violates")
    assert transient("Batch job submission failed: Socket timed out on send/recv operation")
    assert not transient("Batch job submission failed: Invalid account or account/partition")


@pytest.mark.parametrize(
    ("checkpointed", "state", "expected"),
    [
        (True, "CANCELLED", False),  # scancel
        (True, "COMPLETED", True),  # preempted, ended within GraceTime
        (True, "FAILED", True),
        (False, "PREEMPTED", True),  # killed at the end of GraceTime
        (False, "NODE_FAIL", False),
        (True, "", False),  # sacct did not say
    ],
)
def test_preempted_by_recorded_end_state(checkpointed, state, expected):
    assert preempted(checkpointed, state) is expected


@pytest.mark.parametrize(
    ("rc", "stopping", "done", "expected"),
    [
        (0, False, True, "done"),
        (PREEMPTED, False, False, "release"),  # SIGUSR2: the next host resumes it
        (TERMINATED, False, False, "hold"),  # SIGTERM: the host job's end state decides
        (-9, True, False, "hold"),  # killed with its host
        (-9, False, False, "hold"),  # srun SIGKILLs a signalled step: the end state decides
        (143, False, False, "hold"),  # srun: SIGTERMed before its handler was in (preempted early)
        (-15, False, False, "hold"),
        (-11, False, False, "fail"),  # a crash
        (1, False, False, "fail"),
    ],
)
def test_what_a_host_does_with_an_ended_trial(rc, stopping, done, expected):
    assert outcome(rc, stopping, done) == expected


def test_validate_launcher_args():
    argv = ["sweep", "top_k=2", "hydra.launcher.partition=short", "hydra.launcher.timeout_min=60"]
    argv += ["+hydra.launcher.additional_parameters.reservation=r1"]
    assert launcher_args(argv) == {
        "partition": "short",
        "timeout_min": 60,
        "additional_parameters": {"reservation": "r1"},
    }


def no_slurm_env() -> dict[str, str]:
    """The environment of a machine without SLURM: no directory with `sinfo` on PATH."""
    dirs = os.environ["PATH"].split(os.pathsep)
    path = os.pathsep.join(d for d in dirs if not (Path(d) / "sinfo").exists())
    return {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "SLURM_CONF")} | {
        "PATH": path,
        "OMP_NUM_THREADS": "1",
    }


def sweep(tmp_path, *overrides):
    cmd = [sys.executable, "-m", "rlhp.train", "-m", "+search=ppo_cartpole", "+cluster=slurm"]
    cmd += [f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweeper.n_trials=3", *overrides]
    return subprocess.run(
        cmd, cwd=tmp_path, env=no_slurm_env(), capture_output=True, text=True, timeout=300
    )


def test_dry_run_needs_no_slurm(tmp_path):
    proc = sweep(tmp_path, "hydra.sweeper.dry_run=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(re.findall(r"^trial \d+: algo\.", proc.stdout, re.MULTILINE)) == 3, proc.stdout
    assert not (tmp_path / "sweep" / "study.journal").exists()


def test_a_search_without_slurm_is_one_error_line(tmp_path):
    proc = sweep(tmp_path, "hydra.launcher.partition=gpu")
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["rlhp: error: SLURM is not available here: no `sinfo` on PATH"], proc.stderr
    assert not (tmp_path / "sweep" / "study.journal").exists()
