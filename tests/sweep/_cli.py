"""Run the real CLIs (`python -m rlhp.train -m`, `rlhp.analyze`, ...) in subprocesses and read
back what a sweep left."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import optuna
from omegaconf import OmegaConf

TINY = ["env.max_frame=1000", "log_frequency=500"]  # a trial: a few seconds of CartPole


def cli_env() -> dict[str, str]:
    """Hydra's short error output, one torch/BLAS thread per process."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_cli(module: str, *args: object, cwd: Path | None = None, timeout: float = 300):
    """CompletedProcess of `python -m rlhp.<module> ARGS` (rlhp.analyze, rlhp.validate, ...)."""
    cmd = [sys.executable, "-m", f"rlhp.{module}", *map(str, args)]
    return subprocess.run(
        cmd, cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=timeout
    )


def sweep_cmd(sweep_dir: Path, *overrides: str) -> list[str]:
    """A search; its graphs are left out unless overrides ask for hydra.sweeper.graphs=true (the
    tests that read them do, and tests/analysis draws them with rlhp.analyze)."""
    graphs = "hydra.sweeper.graphs=false"
    return [
        sys.executable,
        "-m",
        "rlhp.train",
        "-m",
        f"hydra.sweep.dir={sweep_dir}",
        graphs,
        *overrides,
    ]


def run_sweep(sweep_dir: Path, *overrides: str, timeout: float = 480):
    """CompletedProcess of one sweep; it runs in sweep_dir's parent, so nothing lands elsewhere."""
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        sweep_cmd(sweep_dir, *overrides),
        cwd=sweep_dir.parent,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # pytest may run where SIGINT is ignored


def start_sweep(sweep_dir: Path, *overrides: str, log: Path) -> subprocess.Popen:
    """A sweep in its own process group (its trials too), so that the group can be killed or
    interrupted (SIGINT to the group, as Ctrl+C in a terminal)."""
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        return subprocess.Popen(
            sweep_cmd(sweep_dir, *overrides),
            cwd=sweep_dir.parent,
            env=cli_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_sigint,
        )


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_for(
    predicate: Callable[[], object],
    proc: subprocess.Popen,
    timeout: float,
    what: str,
    log: Path | None = None,
) -> None:
    """Poll predicate until it holds; fail if the process ended first (with its piped stderr) or
    timeout passed (with the tail of its log, if given)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        tail = f"\n{log.read_text()[-3000:]}" if log else ""
        if proc.poll() is not None:
            err = proc.stderr.read()[-3000:] if proc.stderr else ""
            raise AssertionError(
                f"the process ended (exit {proc.returncode}) before {what}{tail}\n{err!s}"
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}{tail}"
        time.sleep(0.2)


class Background:
    """Independent sweeps run a few at a time while the tests that read them wait their turn."""

    def __init__(self, workers: int, keys: set[str]):
        self.pool = ThreadPoolExecutor(workers)
        self.keys = keys  # the sweeps wanted; start() ignores the others
        self.jobs: dict[str, Future] = {}

    def start(self, key: str, sweep_dir: Path, *overrides: str) -> None:
        if key in self.keys:
            self.jobs[key] = self.pool.submit(run_sweep, sweep_dir, *overrides)

    def result(self, key: str) -> subprocess.CompletedProcess:
        return self.jobs[key].result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def load_study(sweep_dir: Path) -> optuna.Study:
    """The study from the sweep's real JournalStorage file."""
    backend = optuna.storages.journal.JournalFileBackend(str(sweep_dir / "study.journal"))
    return optuna.load_study(study_name="rlhp", storage=optuna.storages.JournalStorage(backend))


def trial_dirs(sweep_dir: Path) -> list[int]:
    """The trial directories (named by trial number) the sweep created, sorted."""
    if not sweep_dir.exists():
        return []
    return sorted(int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())


def assigned(sweep_dir: Path) -> dict[int, list[int]]:
    """Population job -> the trials its inbox was given, in order."""
    inboxes = (sweep_dir / "populations").glob("*/inbox.jsonl")
    out = {}
    for inbox in sorted(inboxes, key=lambda p: int(p.parent.name)):
        lines = [json.loads(line) for line in inbox.read_text().splitlines()]
        out[int(inbox.parent.name)] = [line["trial"] for line in lines]
    return out


def state(sweep_dir: Path):
    return OmegaConf.load(sweep_dir / "state.yaml")


def trial_config(sweep_dir: Path, number: int):
    """The configuration the trial process really ran with."""
    return OmegaConf.load(sweep_dir / str(number) / ".hydra" / "config.yaml")


def output(proc: subprocess.CompletedProcess) -> str:
    out, err = proc.stdout[-3000:], proc.stderr[-3000:]
    return f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"
