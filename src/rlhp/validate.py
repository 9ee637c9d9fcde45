"""Re-run the best configurations of a search with fresh seeds:
`python -m rlhp.validate SWEEP_DIR top_k=5 sessions=4 [slots=N] [--local]`.

A search picks its best configuration by a noisy score, so the winner's score is biased upwards
(the selection bias). Validation re-runs the top_k complete trials with `sessions` seeds none of
the search's trials used, without early stopping, `slots` runs at once, each as

    python -m rlhp.train <the trial's overrides> seed=S max_session=SESSIONS \
        meta.search_scheduler=null hydra.run.dir=SWEEP_DIR/validation/trial<N>

Seeds: trial N gets S = BASE + N * SESSIONS (sessions S ... S+SESSIONS-1), where BASE is 10000,
or above every seed of the search if it used seeds that high. It writes validation.csv (trial,
search score, validated mean and std, rank by validated score, selection bias), picks the final
best by validated score (best_validated.yaml, a config that trains with one command) and prints
the selection bias. Running it again resumes: a configuration whose validation run has a
result.yaml is not run again.

Where: as local processes, unless the search ran on SLURM (`+cluster=slurm`: its trials'
.hydra/hydra.yaml name submitit's SLURM launcher). Then each run is a SLURM job (submitit) with
one trial's resources (partition, cpus, mem, time, setup, ...; whole GPUs: ceil of
meta.search_resources.gpu), all at once unless `slots` says otherwise; the command runs inside
the job. Preempted or at its time limit (SIGUSR2) the run checkpoints and the job is requeued
(`hydra.launcher.max_num_timeout` time limits at most), resuming from its checkpoints. `--local`
runs them here anyway.
"""

import argparse
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf
from submitit.helpers import DelayedSubmission

from rlhp import analyze as an
from rlhp.analyze import write_atomic

log = logging.getLogger("rlhp.validate")

SEED_BASE = 10_000
# overrides of the trial that validation sets itself
_OWN = ("seed", "max_session", "meta.search_scheduler")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("~+")


def run_overrides(sweep: an.Sweep, number: int, seed: int, sessions: int) -> list[str]:
    """The validation run's overrides: the trial's own, then fresh seeds and no ASHA."""
    trial = an.trial_overrides(sweep, number)
    if trial is None:
        raise an.AnalysisError(f"trial {number} has no .hydra/overrides.yaml to re-run")
    kept = [o for o in trial if _key(o) not in _OWN and not _key(o).startswith("hydra.")]
    run_dir = sweep.dir / "validation" / f"trial{number}"
    return (
        an.app_args(sweep)
        + kept
        + [
            f"seed={seed}",
            f"max_session={sessions}",
            "meta.search_scheduler=null",
            f"hydra.run.dir={run_dir}",
        ]
    )


def _search_seeds(sweep: an.Sweep) -> set[int]:
    seeds: set[int] = set()
    for t in sweep.trials:
        path = sweep.trial_dir(t.number) / ".hydra" / "config.yaml"
        if path.is_file():
            cfg = OmegaConf.load(path)
            seed, n = int(cfg.get("seed", 0)), int(cfg.get("max_session", 1))
            seeds.update(range(seed, seed + n))
    return seeds


def _seed(sweep: an.Sweep, number: int, sessions: int, search_seeds: set[int]) -> int:
    """The first seed of trial `number`'s validation run (kept from an interrupted run)."""
    path = sweep.dir / "validation" / f"trial{number}" / ".hydra" / "config.yaml"
    if path.is_file():
        return int(OmegaConf.load(path).seed)
    base = max(SEED_BASE, max(search_seeds, default=0) + 1)
    return base + number * sessions


def _cwd(sweep: an.Sweep) -> Path:
    """Where the search ran (relative paths in its config resolve there)."""
    hydra_cfg = sweep.hydra
    cwd = OmegaConf.select(hydra_cfg, "runtime.cwd", default=None) if hydra_cfg else None
    return Path(cwd) if cwd and Path(cwd).is_dir() else Path.cwd()


def _start(overrides: list[str], run_dir: Path, cwd: Path) -> subprocess.Popen:
    """`python -m rlhp.train <overrides>`, its output appended to run_dir/validate.log."""
    cmd = [sys.executable, "-m", "rlhp.train", *overrides]
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    with open(run_dir / "validate.log", "a") as out:
        out.write("$ " + shlex.join(cmd) + "\n")
        out.flush()
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


class SlurmRun:
    """A validation run as a submitit job: the local command, started inside the job. On
    SIGUSR2 (preemption, time limit) submitit calls checkpoint(): the run checkpoints on the same
    signal, and the requeued job starts it again from those checkpoints."""

    def __init__(self, overrides: list[str], run_dir: Path, cwd: Path):
        self.overrides, self.run_dir, self.cwd = overrides, run_dir, cwd
        self.proc: subprocess.Popen | None = None

    def __call__(self) -> int:
        self.proc = _start(self.overrides, self.run_dir, self.cwd)
        return self.proc.wait()

    def checkpoint(self) -> DelayedSubmission:
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, signal.SIGUSR2)
                os.waitpid(self.proc.pid, 0)  # not proc.wait(): the interrupted one holds its lock
            except (ProcessLookupError, ChildProcessError):
                pass  # it had ended
        return DelayedSubmission(SlurmRun(self.overrides, self.run_dir, self.cwd))


def slurm_params(run_dir: Path) -> dict[str, Any] | None:
    """The SLURM launcher settings a trial ran with (its .hydra/hydra.yaml, resolved against its
    config), with whole GPUs for meta.search_resources.gpu; None if it did not run on SLURM."""
    hydra_path, cfg_path = run_dir / ".hydra" / "hydra.yaml", run_dir / ".hydra" / "config.yaml"
    if not (hydra_path.is_file() and cfg_path.is_file()):
        return None
    hydra_cfg = OmegaConf.load(hydra_path).hydra
    launcher = OmegaConf.to_container(hydra_cfg.get("launcher") or {})
    if not str(launcher.get("_target_", "")).endswith(".SlurmLauncher"):
        return None
    skip = ("_target_", "submitit_folder")  # the runs get a folder of their own
    hydra_cfg.launcher = {k: v for k, v in launcher.items() if k not in skip}
    cfg = OmegaConf.merge(OmegaConf.load(cfg_path), {"hydra": hydra_cfg})
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    if (gpu := OmegaConf.select(cfg, "meta.search_resources.gpu", default=0) or 0) > 0:
        params["gpus_per_node"] = math.ceil(gpu)
    return params


def _executor(params: dict[str, Any], folder: Path, name: str):
    """A submitit SLURM executor with the launcher's settings (as Hydra's launcher builds it)."""
    import submitit

    from rlhp.sweep._slurm import _submitit_names

    params = dict(params, name=name)
    init = {f"slurm_{k}": params.pop(k) for k in ("max_num_timeout", "python") if k in params}
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm", **init)
    executor.update_parameters(**_submitit_names(params))
    return executor


def _submit(number: int, overrides: list[str], run_dir: Path, cwd: Path, params: dict) -> int:
    """The run as a SLURM job; its exit code (1 when it could not be submitted or the job ended
    without one: cancelled, killed, node failure, too many time limits)."""
    folder = run_dir.parent / ".submitit" / "%j"
    try:
        job = _executor(params, folder, f"rlhp_validate{number}").submit(
            SlurmRun(overrides, run_dir, cwd)
        )
        print(f"rlhp.validate: trial {number} submitted as SLURM job {job.job_id}", flush=True)
        return job.result()
    except Exception as e:
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "validate.log", "a") as out:
            out.write(f"rlhp.validate: SLURM Error: {e}\n")
        return 1


def _error(run_dir: Path) -> str:
    path = run_dir / "validate.log"
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []
    useful = [ln for ln in lines if "Error" in ln or "rlhp: error" in ln]
    return ((useful or lines or ["no output"])[-1]).strip()[:300]


def validate(
    sweep_dir: Path, top_k: int = 5, sessions: int = 4, slots: int | None = 1, local: bool = False
) -> pd.DataFrame:
    """Re-run the top_k complete trials with `sessions` fresh seeds each, `slots` at once
    (None: one per CPU here, all at once on SLURM); as SLURM jobs if the search ran on SLURM,
    unless `local`. Write validation.csv and best_validated.yaml; return the table, best
    validated first."""
    if top_k <= 0 or sessions <= 0 or (slots is not None and slots <= 0):
        raise ValueError(
            f"top_k, sessions and slots must be positive: {top_k}, {sessions}, {slots}"
        )
    sweep = an.load(Path(sweep_dir))
    table = an.experiment_df(sweep)
    top = table[table["state"] == "complete"].head(top_k)
    if top.empty:
        raise an.AnalysisError(f"{sweep.dir}: no complete trial to validate")
    search_seeds = _search_seeds(sweep)
    cwd = _cwd(sweep)
    jobs = []
    for _, row in top.iterrows():
        number = int(row["trial"])
        run_dir = sweep.dir / "validation" / f"trial{number}"
        seed = _seed(sweep, number, sessions, search_seeds)
        overrides = run_overrides(sweep, number, seed, sessions)
        params = None if local else slurm_params(sweep.trial_dir(number))
        jobs.append((row, number, run_dir, seed, overrides, params))
    todo = [j for j in jobs if not (j[2] / "result.yaml").is_file()]
    done = len(jobs) - len(todo)
    on_slurm = any(j[5] is not None for j in todo)
    slots = slots or (len(jobs) if on_slurm else os.cpu_count() or 1)
    print(
        f"rlhp.validate: top {len(jobs)} of {sweep.dir}, {sessions} fresh seeds each, "
        f"{len(todo)} to run ({done} done before), {min(slots, max(len(todo), 1))} at once"
        + (" as SLURM jobs" if on_slurm else ""),
        flush=True,
    )

    def one(job: tuple) -> int:
        _, number, run_dir, seed, overrides, params = job
        if params is None:
            rc = _start(overrides, run_dir, cwd).wait()
        else:
            rc = _submit(number, overrides, run_dir, cwd, params)
        status = "done" if rc == 0 else f"failed (exit {rc}): {_error(run_dir)}"
        print(f"rlhp.validate: trial {number} (seeds {seed}..{seed + sessions - 1}) {status}")
        return rc

    if todo:
        with ThreadPoolExecutor(min(slots, len(todo))) as pool:
            list(pool.map(one, todo))
    rows = []
    for row, number, run_dir, seed, *_ in jobs:
        out: dict[str, Any] = {
            "trial": number,
            "search_rank": int(row["rank"]),
            "search_score": float(row["objective"]),
            "search_std": _float(row["objective_std"]),
            "search_sessions": _int(row["sessions"]),
            "validated_mean": math.nan,
            "validated_std": math.nan,
            "validated_sessions": 0,
            "seeds": f"{seed}-{seed + sessions - 1}",
            "state": "failed",
            "note": "",
        }
        result = run_dir / "result.yaml"
        if result.is_file():
            res = OmegaConf.load(result)
            out["validated_mean"] = float(res.objective)
            out["validated_std"] = float(res.std)
            out["validated_sessions"] = len(res.sessions)
            out["state"] = "complete" if math.isfinite(out["validated_mean"]) else "failed"
            cfg_path = run_dir / ".hydra" / "config.yaml"
            if cfg_path.is_file():
                cfg = OmegaConf.load(cfg_path)
                out["seeds"] = f"{cfg.seed}-{cfg.seed + len(res.sessions) - 1}"
        else:
            out["note"] = _error(run_dir)
        rows.append(out)
    df = pd.DataFrame(rows)
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
    df = df.reset_index(drop=True)
    write_atomic(sweep.dir / "validation.csv", df.to_csv(index=False))
    _report(sweep, df, sessions)
    # experiment_df.csv gets the validated scores beside the search's
    an.write_csv(an.experiment_df(sweep), sweep.dir / "experiment_df.csv")
    return df


def _float(v: Any) -> float:
    return math.nan if v is None or pd.isna(v) else float(v)


def _int(v: Any) -> int | None:
    return None if v is None or pd.isna(v) else int(v)


def _report(sweep: an.Sweep, df: pd.DataFrame, sessions: int) -> None:
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
        f"{best['validated_mean']:.4g} +- {best['validated_std']:.3g} over {sessions} fresh seeds"
        f" (search rank {int(best['search_rank'])})",
    ]
    header = [
        f"rlhp: best configuration of {sweep.dir} after validation: trial {int(best['trial'])}",
        f"validated {sweep.objective_label} = {best['validated_mean']:.6g} "
        f"(std {best['validated_std']:.3g} over {int(best['validated_sessions'])} fresh seeds "
        f"{best['seeds']}); search score {best['search_score']:.6g}",
        *lines[:2],
        "train it:",
        f"  {an.train_command(sweep, 'best_validated')}",
    ]
    if (alt := an.override_command(sweep, int(best["trial"]))) is not None:
        header += ["or, with the search's own overrides on the app's config:", f"  {alt}"]
    row = pd.Series({"trial": int(best["trial"])})
    text = an.config_text(sweep, row, header)
    if text is not None:
        write_atomic(sweep.dir / "best_validated.yaml", text)
    for line in lines:
        print(f"rlhp.validate: {line}")
    print(f"rlhp.validate: wrote validation.csv and best_validated.yaml in {sweep.dir}")
    print(f"rlhp.validate: train it: {an.train_command(sweep, 'best_validated')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhp.validate", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument(
        "--slots", type=int, help="runs at once (default: one per CPU; SLURM: all at once)"
    )
    parser.add_argument(
        "--local", action="store_true", help="run here even if the search ran on SLURM"
    )
    args = parser.parse_args(an._args(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        df = validate(args.sweep_dir, args.top_k, args.sessions, args.slots, args.local)
    except (an.AnalysisError, ValueError) as e:
        print(f"rlhp.validate: error: {e}", file=sys.stderr)
        return 1
    return 0 if df["validated_mean"].notna().all() else 1


if __name__ == "__main__":
    # rlhp.validate's own main, so that submitit pickles SlurmRun by name, not as __main__'s
    from rlhp.validate import main as _main

    sys.exit(_main())
