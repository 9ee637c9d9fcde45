"""Re-run the best configurations of a search with fresh seeds:
`python -m rlhp.validate SWEEP_DIR top_k=5 max_session=4 [slots=N] [--local]`.

A search picks its best configuration by a noisy score, so the winner's score is biased upwards
(the selection bias). Validation re-runs the top_k complete trials with `max_session` seeds none of
the search's trials used, without early stopping, `slots` runs at once, each as

    python -m rlhp.train <the trial's overrides> seed=S max_session=M \
        meta.search_scheduler=null hydra.run.dir=SWEEP_DIR/validation/trial<N>

Seeds: trial N gets S = BASE + N * M (sessions S ... S+M-1), where BASE is 10000,
or above every seed of the search if it used seeds that high. It writes validation.csv (trial,
search score, validated mean and std, rank by validated score, selection bias), picks the final
best by validated score (best_validated.yaml, a config that trains with one command) and prints
the selection bias. Running it again resumes: a configuration whose validation run has a
result.yaml is not run again.

Where: every run is a job of the search's own job layer, and the command runs inside it. Here
(a local submitit job, rlhp.sweep._local.Jobs, with the trial's timeout_min), unless the search
ran on SLURM (`+cluster=slurm`: its trials' .hydra/hydra.yaml name submitit's SLURM launcher).
Then each run is a SLURM job (rlhp.sweep._slurm.Jobs) with one trial's resources (partition,
cpus, mem, time, setup, ...; whole GPUs: ceil of meta.search_resources.gpu), all at once unless
`slots` says otherwise, with the search's requeue rule: at its time limit (SIGUSR2) the run
checkpoints and the job is requeued; preempted (SIGTERM), it checkpoints and is submitted again
(`hydra.launcher.max_num_timeout` times at most), resuming from its checkpoints. A job that
ends without a result (cancelled, killed, node failure) is a failed row, unless the search ran
with `hydra.sweeper.requeue=true`: then it is submitted again (max_num_timeout times at most)
and resumes from its checkpoints.
`hydra.launcher.KEY=VALUE` arguments replace the trial's settings for these jobs (e.g.
`hydra.launcher.partition=short hydra.launcher.timeout_min=60 hydra.launcher.account=myproj`).
`--local` runs them here anyway.
"""

# Over 400 lines: the seeds, the runs and their runner, the table and the report of one stage.

import argparse
import json
import logging
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf
from submitit.helpers import DelayedSubmission

from rlhp.analysis import (
    app_args,
    cli_args,
    config_text,
    experiment_df,
    override_command,
    train_command,
    trial_overrides,
    write_table,
)
from rlhp.analysis.tensorboard import hide_validation_sessions
from rlhp.record import (
    COMPLETE,
    FAILED,
    VALIDATION_CSV,
    AnalysisError,
    Sweep,
    TrialResult,
    config_path,
    hydra_path,
    load,
    validation_dir,
    write_atomic,
)
from rlhp.slurm import trial_params, trial_requeue
from rlhp.sweep import _local
from rlhp.sweep._launch import requeued
from rlhp.sweep._local import Terminated, stop_on_sigterm
from rlhp.sweep._slurm import Jobs

log = logging.getLogger("rlhp.validate")

SEED_BASE = 10_000
STOPPED = "stopped"  # a run's result (local or SLURM job) when SIGTERM stopped it at a checkpoint
# overrides of the trial that validation sets itself
_OWN = ("seed", "max_session", "meta.search_scheduler")
_NOT_INHERITED = ("HYDRA_FULL_ERROR", "SUBMITIT_")
TIMEOUT_MIN = 10080  # a local run's time limit when its trial's launcher named none


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("~+")


def run_overrides(sweep: Sweep, number: int, seed: int, max_session: int) -> list[str]:
    """The validation run's overrides: the trial's own, then fresh seeds and no ASHA."""
    trial = trial_overrides(sweep, number)
    if trial is None:
        raise AnalysisError(f"trial {number} has no .hydra/overrides.yaml to re-run")
    kept = [o for o in trial if _key(o) not in _OWN and not _key(o).startswith("hydra.")]
    run_dir = validation_dir(sweep.dir, number)
    return (
        app_args(sweep)
        + kept
        + [
            f"seed={seed}",
            f"max_session={max_session}",
            "meta.search_scheduler=null",
            f"hydra.run.dir={run_dir}",
        ]
    )


def _search_seeds(sweep: Sweep) -> set[int]:
    seeds: set[int] = set()
    for t in sweep.trials:
        path = config_path(sweep.trial_dir(t.number))
        if path.is_file():
            cfg = OmegaConf.load(path)
            seed, n = int(cfg.get("seed", 0)), int(cfg.get("max_session", 1))
            seeds.update(range(seed, seed + n))
    return seeds


def _seed(sweep: Sweep, number: int, max_session: int, search_seeds: set[int]) -> int:
    """The first seed of trial `number`'s validation run (kept from an interrupted run)."""
    path = config_path(validation_dir(sweep.dir, number))
    if path.is_file():
        return int(OmegaConf.load(path).seed)
    base = max(SEED_BASE, max(search_seeds, default=0) + 1)
    return base + number * max_session


def _cwd(sweep: Sweep) -> Path:
    """Where the search ran (relative paths in its config resolve there)."""
    hydra_cfg = sweep.hydra
    cwd = OmegaConf.select(hydra_cfg, "runtime.cwd", default=None) if hydra_cfg else None
    return Path(cwd) if cwd and Path(cwd).is_dir() else Path.cwd()


def _start(overrides: list[str], run_dir: Path, cwd: Path) -> subprocess.Popen:
    """`python -m rlhp.train <overrides>`, its output appended to run_dir/validate.log; a plain
    process, not a task of the job that starts it (no SUBMITIT_* variables)."""
    cmd = [sys.executable, "-m", "rlhp.train", *overrides]
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    with open(run_dir / "validate.log", "a") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


class Command:
    """A validation run as a job's function (a local or a SLURM job): the train command, started
    inside the job. On SIGUSR2 (time limit; SLURM preemption) submitit calls checkpoint(): the
    run checkpoints on the same signal, and the requeued job starts it again from those
    checkpoints. On SIGTERM (stop, preemption, scancel) the run checkpoints and the job returns
    STOPPED: the job layer decides (rlhp.sweep._slurm.Jobs.call, rlhp.sweep._local.Jobs.call)."""

    def __init__(self, overrides: list[str], run_dir: Path, cwd: Path):
        self.overrides, self.run_dir, self.cwd = overrides, run_dir, cwd
        self.proc: subprocess.Popen | None = None

    def __call__(self) -> int | str:
        signalled: list[int] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._pass_on(signalled))
        self.proc = _start(self.overrides, self.run_dir, self.cwd)
        rc = self.proc.wait()
        return STOPPED if signalled else rc

    def _pass_on(self, signalled: list[int]):
        """On SIGTERM or SIGINT (Ctrl+C, which the run may have had too): SIGTERM to the run (a
        local job's controller signals this process only), which checkpoints; the job ends
        after it, so nothing trains on once the job has ended."""

        def handler(signum: int, _frame) -> None:
            signalled.append(signum)
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)

        return handler

    def checkpoint(self) -> DelayedSubmission:
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, signal.SIGUSR2)
                os.waitpid(self.proc.pid, 0)  # not proc.wait(): the interrupted one holds its lock
            except (ProcessLookupError, ChildProcessError):
                pass  # it had ended
        return DelayedSubmission(Command(self.overrides, self.run_dir, self.cwd))


def _error(run_dir: Path) -> str:
    path = run_dir / "validate.log"
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    useful = [ln for ln in lines if "Error" in ln or "rlhp: error" in ln]
    return ((useful or lines or ["no output"])[-1]).strip()[:300]


@dataclass
class Run:
    """One validation run: trial `number` (its search row) re-run in `run_dir` from `seed`;
    `params`: its SLURM launcher settings, None to run here (a local job with the trial's
    `timeout_min`); `requeue`: the search's hydra.sweeper.requeue."""

    row: pd.Series
    number: int
    run_dir: Path
    seed: int
    overrides: list[str]
    params: dict[str, Any] | None
    requeue: bool = False  # submitted again when its SLURM job ends without a result
    timeout_min: float = TIMEOUT_MIN


def _stopped(result: int | str) -> bool:
    return result == STOPPED


def _submit(run: Run, cwd: Path, jobs: Jobs | _local.Jobs) -> int | None:
    """The run as a job, through the search's own job layer (rlhp.sweep._local.Jobs here,
    rlhp.sweep._slurm.Jobs on SLURM: submitted again when SLURM preempted it; with the search's
    requeue=true, also when it ended without a result): its exit code; 1 when it could not be
    submitted or ended without one; None when the runner stopped it."""
    name = f"rlhp_validate{run.number}"
    what = f"the validation of trial {run.number}"
    job = partial(jobs.call, name, what, _stopped, Command(run.overrides, run.run_dir, cwd))

    def again(e: Exception) -> None:
        print(
            f"rlhp.validate: trial {run.number}: SLURM job {jobs.ids[name]} ended without a "
            f"result ({str(e).strip().splitlines()[-1]}); submitted again (hydra.sweeper.requeue)",
            flush=True,
        )

    times = (run.params or {}).get("max_num_timeout", 3)
    try:
        return requeued(job, run.requeue, times, again)
    except KeyboardInterrupt:  # Runner.stop: it checkpointed
        return None
    except Exception as e:  # NotSubmitted, or it ended without a result
        run.run_dir.mkdir(parents=True, exist_ok=True)
        where = "local" if run.params is None else "SLURM"
        with open(run.run_dir / "validate.log", "a") as out:
            out.write(f"rlhp.validate: {where} job Error: {e}\n")
        return 1


def _params(run_dir: Path, launcher: dict[str, Any]) -> dict[str, Any] | None:
    """A trial's SLURM launcher settings with `launcher` (hydra.launcher.* arguments) merged in;
    None if it did not run on SLURM."""
    params = trial_params(run_dir)
    if params is None or not launcher:
        return params
    return OmegaConf.to_container(OmegaConf.merge(params, launcher))


def _runs(
    sweep: Sweep, top: pd.DataFrame, max_session: int, local: bool, launcher: dict[str, Any]
) -> list[Run]:
    search_seeds = _search_seeds(sweep)
    runs = []
    for _, row in top.iterrows():
        number = int(row["trial"])
        seed = _seed(sweep, number, max_session, search_seeds)
        runs.append(
            Run(
                row,
                number,
                validation_dir(sweep.dir, number),
                seed,
                run_overrides(sweep, number, seed, max_session),
                None if local else _params(sweep.trial_dir(number), launcher),
                not local and trial_requeue(sweep.trial_dir(number)),
                _timeout_min(sweep.trial_dir(number)),
            )
        )
    return runs


def _timeout_min(run_dir: Path) -> float:
    """The time limit a trial ran under here (its launcher's timeout_min)."""
    path = hydra_path(run_dir)
    hydra_cfg = OmegaConf.load(path) if path.is_file() else OmegaConf.create()
    limit = OmegaConf.select(
        hydra_cfg, "hydra.launcher.timeout_min", throw_on_resolution_failure=False
    )
    return limit if isinstance(limit, int | float) else TIMEOUT_MIN


class Runner:
    """Runs validation runs, `slots` at once, each as a local or a SLURM job, and prints how
    each ended. Stopped (Ctrl+C, SIGTERM), every running run checkpoints and ends as a search's
    trials do (its job layer's stop: SIGTERM to the run, nothing requeued); the same command
    resumes them from their checkpoints."""

    def __init__(self, cwd: Path, max_session: int, slots: int):
        self.cwd, self.max_session, self.slots = cwd, max_session, slots
        self.jobs: dict[str, Jobs | _local.Jobs] = {}  # by their launcher settings
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self, runs: list[Run]) -> None:
        pool = ThreadPoolExecutor(min(self.slots, len(runs)))
        try:
            list(pool.map(self.one, runs))
        except BaseException:
            self.stop()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def one(self, run: Run) -> int | None:
        if self.stopping.is_set():
            return None
        rc = _submit(run, self.cwd, self._jobs(run))
        if self.stopping.is_set():
            status = "stopped at a checkpoint (the same command resumes it)"
        else:
            status = "done" if rc == 0 else f"failed (exit {rc}): {_error(run.run_dir)}"
        seeds = f"{run.seed}..{run.seed + self.max_session - 1}"
        print(f"rlhp.validate: trial {run.number} (seeds {seeds}) {status}", flush=True)
        return rc

    def _jobs(self, run: Run) -> Jobs | _local.Jobs:
        """The job layer of the runs with `run`'s launcher settings (trials of one search share
        them, unless a searched value sets a resource)."""
        key = json.dumps(run.params or {"local": run.timeout_min}, sort_keys=True, default=str)
        with self.lock:
            if key not in self.jobs:
                folder = run.run_dir.parent / ".submitit" / "%j"
                if run.params is None:
                    self.jobs[key] = _local.Jobs(folder, run.timeout_min)
                else:
                    self.jobs[key] = Jobs(run.params, folder=folder)
            return self.jobs[key]

    def stop(self) -> None:
        self.stopping.set()
        with self.lock:
            for jobs in self.jobs.values():
                jobs.stop()


def _result_row(run: Run, max_session: int) -> dict[str, Any]:
    """The validation table's row of a run: its search score beside its validated one."""
    row = run.row
    out: dict[str, Any] = {
        "trial": run.number,
        "search_rank": int(row["rank"]),
        "search_score": float(row["objective"]),
        "search_std": _float(row["objective_std"]),
        "search_sessions": _int(row["sessions"]),
        "validated_mean": math.nan,
        "validated_std": math.nan,
        "validated_sessions": 0,
        "seeds": f"{run.seed}-{run.seed + max_session - 1}",
        "state": FAILED,
        "note": "",
    }
    if not TrialResult.exists(run.run_dir):
        out["note"] = _error(run.run_dir)
        return out
    res = TrialResult.read(run.run_dir)
    out["validated_mean"] = float(res.objective)
    out["validated_std"] = float(res.objective_std)
    out["validated_sessions"] = len(res.sessions)
    out["state"] = COMPLETE if math.isfinite(out["validated_mean"]) else FAILED
    cfg_path = config_path(run.run_dir)
    if cfg_path.is_file():
        cfg = OmegaConf.load(cfg_path)
        out["seeds"] = f"{cfg.seed}-{cfg.seed + len(res.sessions) - 1}"
    return out


def _table(sweep: Sweep, runs: list[Run], max_session: int) -> pd.DataFrame:
    """validation.csv: best validated first, with the selection bias of each."""
    df = pd.DataFrame([_result_row(run, max_session) for run in runs])
    df.insert(
        df.columns.get_loc("validated_sessions") + 1,
        "bias",
        df["search_score"] - df["validated_mean"],
    )
    sign = -1.0 if sweep.maximize else 1.0
    order = (df["validated_mean"] * sign).fillna(math.inf)
    df = df.assign(_order=order).sort_values(["_order", "search_rank"]).drop(columns="_order")
    ranks = df["validated_mean"].notna().cumsum().where(df["validated_mean"].notna())
    df.insert(1, "rank", ranks.astype("Int64"))
    return df.reset_index(drop=True)


def validate(
    sweep_dir: Path,
    top_k: int = 5,
    max_session: int = 4,
    slots: int | None = 1,
    local: bool = False,
    launcher: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Re-run the top_k complete trials with `max_session` fresh seeds each, `slots` at once
    (None: one per CPU here, all at once on SLURM); as SLURM jobs if the search ran on SLURM,
    unless `local`, with `launcher` (hydra.launcher.* settings) over the trial's. Write
    validation.csv and best_validated.yaml, and the validated scores into experiment_df.csv;
    return the table, best validated first."""
    if top_k <= 0 or max_session <= 0 or (slots is not None and slots <= 0):
        raise ValueError(
            f"top_k, max_session and slots must be positive: {top_k}, {max_session}, {slots}"
        )
    sweep = load(Path(sweep_dir))
    table = experiment_df(sweep)
    top = table[table["state"] == COMPLETE].head(top_k)
    if top.empty:
        raise AnalysisError(f"{sweep.dir}: no complete trial to validate")
    runs = _runs(sweep, top, max_session, local, launcher or {})
    todo = [run for run in runs if not TrialResult.exists(run.run_dir)]
    on_slurm = any(run.params is not None for run in todo)
    if launcher and not any(run.params is not None for run in runs):
        raise ValueError("hydra.launcher.* settings are for SLURM jobs; these runs are local")
    slots = slots or (len(runs) if on_slurm else os.cpu_count() or 1)
    print(
        f"rlhp.validate: top {len(runs)} of {sweep.dir}, {max_session} fresh seeds each, "
        f"{len(todo)} to run ({len(runs) - len(todo)} done before), "
        f"{min(slots, max(len(todo), 1))} at once" + (" as SLURM jobs" if on_slurm else ""),
        flush=True,
    )
    if todo:
        Runner(_cwd(sweep), max_session, slots).run(todo)
    df = _table(sweep, runs, max_session)
    write_atomic(sweep.dir / VALIDATION_CSV, df.to_csv(index=False))
    _report(sweep, df, max_session)
    write_table(sweep)  # experiment_df.csv with the validated scores beside the search's
    hide_validation_sessions(sweep.dir)  # TensorBoard's HParams rows stay the search's trials
    return df


def _float(v: Any) -> float:
    return math.nan if v is None or pd.isna(v) else float(v)


def _int(v: Any) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


def _report(sweep: Sweep, df: pd.DataFrame, max_session: int) -> None:
    """best_validated.yaml and the printed selection bias."""
    ok = df[df["validated_mean"].notna()]
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        cols = ["trial", "rank", "search_rank", "search_score", "validated_mean"]
        print(df[cols + ["validated_std", "bias", "seeds"]].to_string(index=False))
    if ok.empty:
        print("rlhp.validate: every validation run failed; see validation/*/validate.log")
        return
    best = ok.iloc[0]
    first = df[df["search_rank"] == df["search_rank"].min()].iloc[0]
    mean_bias = float(ok["bias"].mean())
    lines = [
        f"selection bias of the search's best (trial {int(first['trial'])}): "
        + (
            f"{first['bias']:+.4g} (search {first['search_score']:.4g}, "
            f"validated {first['validated_mean']:.4g})"
            if pd.notna(first["bias"])
            else "unknown (its validation failed)"
        ),
        f"mean selection bias over the top {len(ok)}: {mean_bias:+.4g}",
        f"best by validated score: trial {int(best['trial'])}, "
        f"{best['validated_mean']:.4g} +- {best['validated_std']:.3g} over {max_session} fresh"
        f" seeds (search rank {int(best['search_rank'])})",
    ]
    header = [
        f"rlhp: best configuration of {sweep.dir} after validation: trial {int(best['trial'])}",
        f"validated {sweep.objective_label} = {best['validated_mean']:.6g} "
        f"(std {best['validated_std']:.3g} over {int(best['validated_sessions'])} fresh seeds "
        f"{best['seeds']}); search score {best['search_score']:.6g}",
        *lines[:2],
        "train it:",
        f"  {train_command(sweep, 'best_validated')}",
    ]
    if (alt := override_command(sweep, int(best["trial"]))) is not None:
        header += ["or, with the search's own overrides on the app's config:", f"  {alt}"]
    row = pd.Series({"trial": int(best["trial"])})
    text = config_text(sweep, row, header)
    if text is not None:
        write_atomic(sweep.dir / "best_validated.yaml", text)
    for line in lines:
        print(f"rlhp.validate: {line}")
    print(f"rlhp.validate: wrote validation.csv and best_validated.yaml in {sweep.dir}")
    print(f"rlhp.validate: train it: {train_command(sweep, 'best_validated')}")


_LAUNCHER = re.compile(r"^\+{0,2}hydra\.launcher\.[^=]+=")


def launcher_args(argv: list[str]) -> dict[str, Any]:
    """The `[+]hydra.launcher.KEY=VALUE` arguments as launcher settings (values parsed as Hydra
    parses them: `timeout_min=60` is a number, `additional_parameters.x=y` a nested key)."""
    dotlist = [a.lstrip("+").removeprefix("hydra.launcher.") for a in argv if _LAUNCHER.match(a)]
    return OmegaConf.to_container(OmegaConf.from_dotlist(dotlist)) if dotlist else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhp.validate", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--max_session", type=int, default=4, help="fresh seeds per trial")
    parser.add_argument("--sessions", type=int, help=argparse.SUPPRESS)  # before 2026-12
    parser.add_argument(
        "--slots", type=int, help="runs at once (default: one per CPU; SLURM: all at once)"
    )
    parser.add_argument(
        "--local", action="store_true", help="run here even if the search ran on SLURM"
    )
    argv = sys.argv[1:] if argv is None else argv
    launcher, rest = launcher_args(argv), [a for a in argv if not _LAUNCHER.match(a)]
    args = parser.parse_args(cli_args(rest))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stop_on_sigterm()  # SIGTERM stops the runs as Ctrl+C does
    try:
        if args.sessions is not None:
            print(
                "rlhp.validate: warning: sessions= is deprecated; use max_session=",
                file=sys.stderr,
            )
            args.max_session = args.sessions
        df = validate(
            args.sweep_dir, args.top_k, args.max_session, args.slots, args.local, launcher
        )
    except (AnalysisError, ValueError) as e:
        print(f"rlhp.validate: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
        print(f"rlhp.validate: {how}; run the same command to resume", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
    return 0 if df["validated_mean"].notna().all() else 1


if __name__ == "__main__":
    # rlhp.validate's own main, so that submitit pickles Command by name, not as __main__'s
    from rlhp.validate import main as _main

    sys.exit(_main())
