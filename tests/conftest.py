"""Shared fixtures: run the real `python -m rlhp.train` CLI in a subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sweep._cli import cli_env


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two pytest-xdist workers (pyproject's addopts: -n 2 --dist loadgroup): the tests of a
    file stay on one worker (their module fixtures run once), the SLURM tests all on one (they
    share the one local cluster), so a worker waiting on SLURM leaves the cores to the other.
    The SLURM tests, the longest group, are handed out first."""
    items.sort(key=lambda item: Path(item.path).parent.name != "slurm")  # stable: files keep order
    for item in items:
        path = Path(item.path)
        group = "slurm" if path.parent.name == "slurm" else str(path)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def rlhp_cli(tmp_path: Path):
    """run(*overrides, run_dir=None, timeout=120) -> CompletedProcess of `python -m rlhp.train`.

    The command runs with cwd=tmp_path (nothing lands in the repository) and, unless run_dir is
    None, with `hydra.run.dir=<run_dir>`.
    """

    def run(*overrides: str, run_dir: Path | None = None, timeout: float = 120):
        cmd = [sys.executable, "-m", "rlhp.train", *overrides]
        if run_dir is not None:
            cmd.append(f"hydra.run.dir={run_dir}")
        return subprocess.run(
            cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=timeout
        )

    return run


@pytest.fixture
def rlhp_cli_background(tmp_path: Path):
    """start(*overrides, run_dir) -> Popen of `python -m rlhp.train`; killed at teardown."""
    procs: list[subprocess.Popen] = []

    def start(*overrides: str, run_dir: Path) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "rlhp.train", *overrides, f"hydra.run.dir={run_dir}"]
        out = subprocess.DEVNULL
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=out, stderr=out))
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def one_torch_thread():
    """In-process training on one torch thread (the machine is shared; tiny nets gain nothing)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
