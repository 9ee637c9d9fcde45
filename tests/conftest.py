"""Shared fixtures: run the real `python -m rlhp.train` CLI in a subprocess."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sweep._cli import cli_env

TESTS = Path(__file__).parent
# seconds a group took (pytest --durations, both workers busy; coarse, only their order counts):
# the groups are handed out longest first, the files not named here last
SECONDS = {  # measured 2026-12-07 (746 tests, pytest 17:49 on this 2-core machine)
    "slurm": 590,
    "sweep/test_sweeper_cli.py": 200,
    "sweep/test_resume_cli.py": 170,
    "sweep/test_batched_retire_cli.py": 100,
    "sweep/test_seed_flows.py": 90,
    "sweep/test_batched_cli.py": 90,
    "analysis/test_analyze.py": 70,
    "sweep/test_process_death_cli.py": 70,
    "test_train_cli.py": 70,
    "test_stage.py": 60,
    "sweep/test_bad_input_cli.py": 50,
    "test_offpolicy_cli.py": 50,
    "test_algos_cli.py": 40,
    "test_spec.py": 40,
    "test_validate.py": 40,
    "test_spec_slm.py": 30,
    "analysis/test_ordered_cli.py": 30,
    "test_population.py": 30,
    "analysis/test_tensorboard.py": 30,
    "test_console_scripts.py": 30,
    "asha/test_cli.py": 20,
    "sweep/test_renamed_settings_cli.py": 20,
    "analysis/test_graphs_cli.py": 20,
    "test_resume.py": 20,
    "test_population_offpolicy.py": 20,
}


def group(item: pytest.Item) -> str:
    """The tests marked slurm share one group (the one local cluster: a preemption test needs
    its node to itself), so a worker waiting on SLURM leaves the cores to the other; the tests of
    a file share one (their module fixtures run once)."""
    return "slurm" if item.get_closest_marker("slurm") else str(Path(item.path).relative_to(TESTS))


@pytest.hookimpl(tryfirst=True)  # before xdist's, which turns the marks into group names
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Two pytest-xdist workers (pyproject's addopts: -n 2 --dist loadgroup
    --no-loadscope-reorder) take the groups in this order, longest first (SECONDS), so that the
    last ones to end are short and neither worker waits long for the other."""
    items.sort(key=lambda item: -SECONDS.get(group(item), 0))  # stable: files keep their order
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))


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
