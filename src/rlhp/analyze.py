"""What users look at after a search: `python -m rlhp.analyze SWEEP_DIR [--evaluator fanova]`.

It reads the sweep dir alone (the study's journal and the trial folders), so it works at the end
of a search, on one still running and on one that was killed. It writes into the sweep dir:

- experiment_df.csv: one row per trial, best first (rlhp.analysis.table lists the columns);
  info/<sweep dir name>_experiment_df.csv, where SLM-Lab writes it, adds SLM-Lab's column names
  (`agent.algorithm.lam` beside `algo.lam`).
  `--metric KEY --sort asc|desc` ranks on another column or on the last value of a metrics.csv
  column instead of the objective.
- multi_trial_graph.png, experiment_variable_graph.png, best_so_far.png, importance.png,
  best_history.png (`--history` prints it: the best configuration after each run, judged by the
  mean over its runs) and, after validation, validation.png.
- `--compare SWEEP_A SWEEP_B ...` puts searches side by side (compare.png, `--out`).
- importance.yaml: the searched parameters ranked by importance, each with its best value, and
  the top configurations.
- best.yaml (and top_k/rank2.yaml ...): the best configurations as complete configs;
  `python -m rlhp.train --config-dir SWEEP_DIR --config-name best` trains the best one.
- an experiment-level HParams summary, so `tensorboard --logdir SWEEP_DIR` lists every trial
  with the searched parameters (shown first) and their domains, and its final metrics.
"""

import argparse
import logging
import os
import shlex
import sys
import traceback
from pathlib import Path

import pandas as pd
import yaml

from rlhp import analysis, record
from rlhp.record import AnalysisError, Sweep, load

log = logging.getLogger("rlhp.analyze")

GRAPHS = (
    "multi_trial_graph.png",
    "experiment_variable_graph.png",
    "best_so_far.png",
    "importance.png",
    "best_history.png",
)


def compare(sweep_dirs: list[Path], out: Path) -> pd.DataFrame:
    """Searches side by side: compare.png and one summary row per search."""
    from rlhp.analysis import plots

    sweeps = [load(Path(d)) for d in sweep_dirs]
    rows = []
    for sweep in sweeps:
        df = analysis.experiment_df(sweep)
        complete = df[df["state"] == "complete"]
        rows.append(
            {
                "search": str(sweep.dir),
                "trials": len(df),
                "complete": len(complete),
                "best": complete["objective"].iloc[0] if len(complete) else None,
                "frames": int(df["frame"].fillna(0).sum()),
            }
        )
    plots.compare_graph(sweeps, out)
    return pd.DataFrame(rows)


def validation_graph(sweep_dir: Path) -> None:
    """validation.png of a validated search (rlhp.validate wrote validation.csv)."""
    from rlhp.analysis import plots

    sweep = load(Path(sweep_dir))
    if (table := record.validation_table(sweep.dir)) is not None:
        plots.validation_graph(sweep, table)


def analyze(
    sweep_dir: Path,
    evaluator: str = "ped_anova",
    *,
    strict: bool = False,
    metric: str | None = None,
    ascending: bool | None = None,
    graphs: bool = True,
) -> list[str]:
    """Write every analysis output into sweep_dir (see the module doc; graphs=False: all but the
    PNG graphs) and print a summary;
    returns the outputs it could not write (a read-only sweep dir, a full disk: one line each
    on stderr, and the table is printed instead of experiment_df.csv).

    Works on a finished, running or killed search. A step that fails is logged and the others
    still run; strict=True raises AnalysisError at the end instead (tests, the CLI's exit code).
    A sweep dir without a study raises AnalysisError, and so does an unknown `metric`.
    """
    sweep = load(Path(sweep_dir))
    failed: list[str] = []
    unwritten: list[str] = []

    def step(name: str, fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            if _unwritable(name, sweep.dir, e):
                unwritten.append(name)
                return None
            failed.append(f"{name}: {type(e).__name__}: {e}")
            log.warning("rlhp.analyze: %s failed:\n%s", name, traceback.format_exc())
            return None

    from rlhp.analysis import plots

    df = analysis.experiment_df(sweep)
    if metric is not None:
        df = analysis.rank_by(
            sweep, df, metric, not sweep.maximize if ascending is None else ascending
        )
    step("experiment_df.csv", analysis.write_table, sweep, df)
    step("info/*_experiment_df.csv", analysis.write_slm_table, sweep, df)
    configs = step("best.yaml", analysis.write_configs, sweep, df) or []
    imp = step("importance", analysis.importance, sweep, evaluator)
    if imp is not None:
        imp["top_configurations"] = analysis.top_configurations(df, sweep.space, configs)
        text = yaml.safe_dump(analysis.plain(imp), sort_keys=False, width=100)
        step("importance.yaml", record.write_atomic, sweep.dir / "importance.yaml", text)
    if graphs:
        step("multi_trial_graph.png", plots.multi_trial_graph, sweep, df)
        step("experiment_variable_graph.png", plots.variable_graph, sweep, df)
        step("best_so_far.png", plots.best_so_far, sweep)
        step("importance.png", plots.importance_graph, sweep, imp)
        steps = analysis.best_history(sweep.trials, sweep.maximize)
        step("best_history.png", plots.best_history_graph, sweep, steps)
        if (sweep.dir / record.VALIDATION_CSV).is_file():
            step("validation.png", validation_graph, sweep.dir)
    tb = step("the TensorBoard HParams summary", analysis.write_tensorboard, sweep)
    _print_summary(sweep, df, configs, imp, tb, unwritten, GRAPHS if graphs else ())
    if failed and strict:
        raise AnalysisError("; ".join(failed))
    return unwritten


def _unwritable(name: str, folder: Path, e: Exception) -> bool:
    """Whether `e` says that output `name` cannot be written into `folder` (a read-only or full
    disk); if so, one line on stderr."""
    if (number := record.disk_errno(e)) is None:
        return False
    print(
        f"rlhp.analyze: error: cannot write {name} in {folder}: {os.strerror(number)}",
        file=sys.stderr,
    )
    return True


def _print_summary(
    sweep: Sweep,
    df: pd.DataFrame,
    configs: list,
    imp: dict | None,
    tb: dict | None,
    unwritten: list[str],
    drawn: tuple[str, ...],
) -> None:
    counts = df["state"].str.split("@").str[0].value_counts()
    parts = [f"{counts.get(s, 0)} {s}" for s in analysis.GROUP if counts.get(s, 0)]
    print(f"rlhp.analyze: {sweep.dir}: {len(df)} trials ({', '.join(parts)})")
    complete = df[df["state"] == "complete"]
    if configs:
        best = df[df["trial"] == configs[0]["trial"]].iloc[0]
        print(f"  best: trial {configs[0]['trial']}, objective {best['objective']:.6g}")
        print(f"  train the best configuration: {configs[0]['command']}")
    elif "best.yaml" in unwritten and len(complete):
        best = complete.iloc[0]
        print(f"  best: trial {best['trial']}, objective {best['objective']:.6g} (no best.yaml)")
    elif len(complete):
        print("  no best.yaml: the best trials' folders hold no .hydra/config.yaml")
    else:
        print("  no complete trial yet: no best.yaml")
    if imp is not None:
        ranked = [e["param"] for e in imp["importance"] if e["importance"] is not None][:3]
        if ranked:
            print(f"  most important ({imp['evaluator']}): {', '.join(ranked)}")
        if imp["note"]:
            print(f"  importance: {imp['note']}")
    if tb and tb["sessions"] and tb["not_logged"]:
        print(f"  TensorBoard: trials do not log {', '.join(tb['not_logged'])}")
    if "experiment_df.csv" in unwritten:
        print(df.to_string(index=False))
    outputs = [o for o in ["experiment_df.csv", "importance.yaml", *drawn] if o not in unwritten]
    logdir = shlex.quote(str(sweep.dir))
    print(f"  wrote {', '.join(outputs) or 'nothing'}; tensorboard --logdir {logdir}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rlhp.analyze", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("sweep_dir", type=Path, nargs="+")
    parser.add_argument("--evaluator", choices=analysis.EVALUATORS, default="ped_anova")
    parser.add_argument("--history", action="store_true", help="print the best-history")
    parser.add_argument("--compare", action="store_true", help="put several searches side by side")
    parser.add_argument("--out", type=Path, default=Path("compare.png"), help="of --compare")
    parser.add_argument("--metric", help="rank on this column or metrics.csv key")
    parser.add_argument("--sort", choices=("asc", "desc"), help="default: the study's direction")
    args = parser.parse_args(analysis.cli_args(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.compare:
            table = compare(args.sweep_dir, args.out)
            print(table.to_string(index=False))
            print(f"rlhp.analyze: wrote {args.out}")
            return 0
        if len(args.sweep_dir) > 1:
            raise AnalysisError("several sweep dirs need --compare")
        ascending = None if args.sort is None else args.sort == "asc"
        unwritten = analyze(
            args.sweep_dir[0], args.evaluator, strict=True, metric=args.metric, ascending=ascending
        )
        if args.history:
            table = analysis.history_table(load(args.sweep_dir[0]))
            print(table.to_string(index=False) if len(table) else "no complete trial yet")
    except AnalysisError as e:
        print(f"rlhp.analyze: error: {e}", file=sys.stderr)
        return 1
    return 1 if unwritten else 0


if __name__ == "__main__":
    sys.exit(main())
