"""The analysis graphs (matplotlib's object API on the Agg canvas: no pyplot, no display).

Over 400 lines: eight graphs, one function each, sharing the helpers at the top."""

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from rlhp.record import METRICS, Sweep, decode, replacing, validation_dir

# rank 1 dark purple ... last rank green (viridis without its palest yellow, readable on white)
RANK_CMAP = ListedColormap(colormaps["viridis"](np.linspace(0.0, 0.85, 256)), name="rank")
QUALITY_CMAP = colormaps["viridis"]  # low objective dark ... high objective yellow
DPI = 110


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")


def _message(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def _counts(table: pd.DataFrame) -> str:
    counts = table["state"].str.split("@").str[0].value_counts()
    return ", ".join(f"{n} {state}" for state, n in counts.items()) or "no trials"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _curve(df: pd.DataFrame | None) -> pd.Series | None:
    """total_reward_ma by frame, the mean over the trial's sessions."""
    if df is None or df.empty or "total_reward_ma" not in df:
        return None
    curve = df.dropna(subset=["total_reward_ma"]).groupby("frame")["total_reward_ma"].mean()
    return curve if len(curve) else None


def multi_trial_graph(sweep: Sweep, table: pd.DataFrame) -> None:
    """Learning curves of every trial, coloured by rank; stopped trials end in an x."""
    fig = Figure(figsize=(10, 6))
    ax = fig.add_subplot()
    ranked = table[table["rank"].notna()]
    norm = Normalize(vmin=1, vmax=max(len(ranked), 2))
    plotted, legend = _draw_curves(ax, sweep, table, norm)
    if plotted == 0:
        _message(ax, "no trial has logged metrics yet")
    else:
        _curves_legend(ax, sweep, table, legend)
        if len(ranked) > 1:
            cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=RANK_CMAP), ax=ax, pad=0.02)
            cbar.set_label("rank (1 = best)")
            cbar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            cbar.ax.invert_yaxis()
        ax.set_xlabel("frame (env steps)")
        ax.set_ylabel("total_reward_ma (mean return, last 100 episodes)")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    done = int((table["state"] == "complete").sum())
    ax.set_title(
        f"Learning curves of {_plural(plotted, 'trial')} ({done} complete)"
        + (", colour = rank" if len(ranked) else "")
    )
    fig.tight_layout()
    _save(fig, sweep.dir / "multi_trial_graph.png")


def _draw_curves(ax, sweep: Sweep, table: pd.DataFrame, norm: Normalize) -> tuple[int, list]:
    """Each trial's curve, worst first so the best lie on top; (how many, legend entries of
    the top 5 as (rank, line, label))."""
    n_ranked = int(table["rank"].notna().sum())
    plotted, legend = 0, []
    for _, row in table.iloc[::-1].iterrows():
        number, state = int(row["trial"]), row["state"]
        curve = _curve(sweep.curves.get(number))
        if curve is None:
            continue
        plotted += 1
        x, y = curve.index.to_numpy(), curve.to_numpy()
        if pd.notna(row["rank"]):
            rank = int(row["rank"])
            colour = RANK_CMAP(norm(rank))
            width = 2.6 if rank == 1 else 1.6 if rank <= 5 else 1.0
            (line,) = ax.plot(x, y, color=colour, lw=width, alpha=0.95, zorder=10 + n_ranked - rank)
            if state.startswith("stopped"):
                ax.plot(x[-1], y[-1], "x", color=colour, ms=9, mew=2.2, zorder=30)
            if rank <= 5:
                label = f"#{rank} trial {number}: {row['objective']:.4g}"
                if state.startswith("stopped"):
                    label += f" ({state})"
                legend.append((rank, line, label))
        elif state == "running":
            ax.plot(x, y, color="0.45", lw=1.2, ls="--", zorder=5)
            ax.plot(x[-1], y[-1], ">", color="0.45", ms=6, zorder=6)
        else:  # failed with a partial curve
            ax.plot(x, y, color="tab:red", lw=1.0, ls=":", zorder=4)
    return plotted, legend


def _curves_legend(ax, sweep: Sweep, table: pd.DataFrame, legend: list) -> None:
    """The top 5 by rank, then what the markers of stopped, running and failed trials mean."""
    legend = sorted(legend, key=lambda e: e[0])
    handles, labels = [h for _, h, _ in legend], [lab for _, _, lab in legend]
    states = table["state"]
    if states.str.startswith("stopped").any():
        handles.append(Line2D([], [], color="0.3", marker="x", ls="none", mew=2))
        labels.append("stopped early (ASHA) at its rung")
    if (states == "running").any():
        handles.append(Line2D([], [], color="0.45", ls="--", marker=">"))
        labels.append("running (latest point)")
    if (states == "failed").any() and any(
        _curve(sweep.curves.get(int(t))) is not None for t in table.loc[states == "failed", "trial"]
    ):
        handles.append(Line2D([], [], color="tab:red", ls=":"))
        labels.append("failed")
    ax.legend(handles, labels, loc="best", fontsize=9, framealpha=0.9)


def _positions(values: list, dist: Any) -> tuple[np.ndarray, list[str] | None]:
    """x positions of a parameter's values and, for a categorical one, its tick labels."""
    if isinstance(dist, CategoricalDistribution):
        labels = [str(decode(c)).replace(" ", "") for c in dist.choices]
        index = {lab: i for i, lab in enumerate(labels)}
        pos = np.array([index.get(str(v).replace(" ", ""), np.nan) for v in values], float)
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(pos))
        return pos + jitter, labels
    return np.array(values, dtype=float), None


def variable_graph(sweep: Sweep, table: pd.DataFrame) -> None:
    """One panel per searched parameter: the objective against its value."""
    names = list(sweep.space)
    complete = table[(table["state"] == "complete") & table["objective"].notna()]
    stopped = table[table["state"].str.startswith("stopped") & table["objective"].notna()]
    if complete.empty and stopped.empty:
        fig = Figure(figsize=(8, 4))
        _message(fig.add_subplot(), f"no trial has an objective yet ({_counts(table)})")
        fig.suptitle("objective against each searched parameter")
        _save(fig, sweep.dir / "experiment_variable_graph.png")
        return
    ncols = min(3, max(len(names), 1))
    nrows = max(math.ceil(len(names) / ncols), 1)
    fig = Figure(figsize=(4.6 * ncols + 1.2, 3.5 * nrows + 0.8))
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(max(len(names), 1))]
    values = complete["objective"].astype(float)
    lo, hi = (values.min(), values.max()) if len(values) else (0.0, 1.0)
    norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-9)
    best = complete.iloc[0] if len(complete) else None
    if not names:
        _message(axes[0], "no searched parameter")
    for ax, name in zip(axes, names, strict=False):
        _parameter_panel(ax, name, sweep.space[name], complete, stopped, norm)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], marker="*", color="tab:red", ls="none", ms=14)]
    labels = [f"best (trial {int(best['trial'])})" if best is not None else "best"]
    if len(stopped):
        handles.append(Line2D([], [], marker="x", color="0.55", ls="none", mew=1.5))
        labels.append("stopped early (objective at its rung)")
    fig.legend(handles, labels, loc="upper right", fontsize=9)
    fig.suptitle(
        f"{sweep.objective_label} against each searched parameter "
        f"({_plural(len(complete), 'complete trial')})",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 0.92, 0.95))
    if len(complete):
        cax = fig.add_axes((0.93, 0.12, 0.015, 0.7))
        cbar = fig.colorbar(ScalarMappable(norm=norm, cmap=QUALITY_CMAP), cax=cax)
        cbar.set_label("objective (brighter = better)" if sweep.maximize else "objective")
    _save(fig, sweep.dir / "experiment_variable_graph.png")


def _parameter_panel(
    ax, name: str, dist: Any, complete: pd.DataFrame, stopped: pd.DataFrame, norm: Normalize
) -> None:
    """The objective against one parameter: complete trials coloured by objective, the best
    (the table's first complete row) starred, stopped ones as grey x at their rung."""
    values = complete["objective"].astype(float)
    if len(stopped):
        x, _ = _positions(list(stopped[name]), dist)
        ax.scatter(x, stopped["objective"], marker="x", color="0.55", s=30, lw=1.2, zorder=2)
    x, labels = _positions(list(complete[name]), dist)
    ax.scatter(
        x,
        values,
        c=values,
        cmap=QUALITY_CMAP,
        norm=norm,
        s=46,
        edgecolors="k",
        linewidths=0.4,
        zorder=3,
    )
    if len(complete):  # the table is best first: the first complete row
        ax.scatter(x[:1], values.iloc[:1], marker="*", s=260, color="tab:red", zorder=4)
    if isinstance(dist, IntDistribution):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 3 else 0)
        ax.set_xlim(-0.5, len(labels) - 0.5)
    elif getattr(dist, "log", False):
        ax.set_xscale("log")
    if labels is None and hasattr(dist, "low"):
        span = dist.high - dist.low
        if getattr(dist, "log", False):
            ax.set_xlim(dist.low / 1.3, dist.high * 1.3)
        elif span > 0:
            ax.set_xlim(dist.low - 0.04 * span, dist.high + 0.04 * span)
    scale = " (log)" if getattr(dist, "log", False) else ""
    ax.set_xlabel(f"{name}{scale}")
    ax.set_ylabel("objective")
    ax.grid(alpha=0.3)


def best_so_far(sweep: Sweep) -> None:
    """The best objective after each completed trial, in completion order."""
    done = [
        t
        for t in sweep.trials
        if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
    ]
    done.sort(key=lambda t: (t.datetime_complete or t.datetime_start, t.number))
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot()
    if not done:
        _message(ax, "no complete trial yet")
    else:
        order = np.arange(1, len(done) + 1)
        values = np.array([t.value for t in done], float)
        best = np.maximum.accumulate(values) if sweep.maximize else np.minimum.accumulate(values)
        ax.scatter(order, values, color="0.55", s=28, zorder=2, label="each complete trial")
        ax.step(order, best, where="post", color="tab:blue", lw=2.4, zorder=3, label="best so far")
        new_best = [i for i in range(len(done)) if i == 0 or best[i] != best[i - 1]]
        ax.scatter(order[new_best], best[new_best], color="tab:blue", s=60, zorder=4)
        for i in new_best:
            ax.annotate(
                f"trial {done[i].number}",
                (order[i], best[i]),
                textcoords="offset points",
                xytext=(4, 8 if sweep.maximize else -14),
                fontsize=8,
                color="tab:blue",
            )
        ax.set_xlabel("complete trials, in order of completion")
        ax.set_ylabel(sweep.objective_label)
        ax.set_xlim(0.5, len(done) + 0.5)
        ax.margins(y=0.12)
        if len(done) <= 20:
            ax.set_xticks(order)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if sweep.maximize else "upper right")
    ax.set_title(
        f"Best configuration so far ({_plural(len(done), 'complete trial')})"
        + (f": {best[-1]:.4g}" if done else "")
    )
    fig.tight_layout()
    _save(fig, sweep.dir / "best_so_far.png")


def importance_graph(sweep: Sweep, imp: dict | None) -> None:
    """Horizontal bars of the parameters' importance, most important on top."""
    fig = Figure(figsize=(8, 0.45 * max(len(sweep.space), 4) + 1.6))
    ax = fig.add_subplot()
    rows = [e for e in (imp or {}).get("importance", []) if e["importance"] is not None]
    evaluator = {"ped_anova": "PED-ANOVA", "fanova": "fANOVA"}.get(
        (imp or {}).get("evaluator"), "?"
    )
    n = (imp or {}).get("complete_trials", 0)
    if not rows:
        why = (imp or {}).get("note") or "importance could not be computed"
        _message(ax, f"no importance: {why}")
    else:
        rows = rows[::-1]  # barh draws bottom up
        names = [e["param"] for e in rows]
        values = [e["importance"] for e in rows]
        top = max(values) or 1.0
        colours = colormaps["viridis"](0.15 + 0.7 * np.array(values) / top)
        bars = ax.barh(names, values, color=colours, edgecolor="k", linewidth=0.4)
        for bar, e in zip(bars, rows, strict=True):
            best = e.get("best_value")
            text = f" {e['importance']:.3f}"
            if best is not None:
                text += f"  (best: {best:.3g})" if isinstance(best, float) else f"  (best: {best})"
            ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, text, va="center")
        ax.set_xlim(0, top * 1.6)
        ax.set_xlabel("importance (normalised, sums to 1)")
        ax.grid(axis="x", alpha=0.3)
        skipped = [e["param"] for e in (imp or {})["importance"] if e["importance"] is None]
        if skipped:
            ax.text(
                0.99,
                0.01,
                "not ranked: " + ", ".join(skipped),
                transform=ax.transAxes,
                ha="right",
                va="bottom",
                fontsize=8,
                color="0.35",
            )
    ax.set_title(f"Hyperparameter importance ({evaluator}, {_plural(n, 'complete trial')})")
    fig.tight_layout()
    _save(fig, sweep.dir / "importance.png")


def best_history_graph(sweep: Sweep, steps: list) -> None:
    """The best configuration's estimated score (mean over its runs) after each completed run,
    each run's own score beside it, and where the best configuration changed."""
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot()
    if not steps:
        _message(ax, "no complete trial yet")
    else:
        runs = np.array([s.run for s in steps])
        ax.scatter(runs, [s.value for s in steps], color="0.6", s=24, zorder=2, label="each run")
        ax.step(
            runs,
            [s.estimate for s in steps],
            where="post",
            color="tab:blue",
            lw=2.2,
            zorder=3,
            label="best configuration: mean over its runs",
        )
        for prev, s in zip([None, *steps], steps, strict=False):
            if prev is None or prev.best != s.best:
                ax.annotate(
                    f"config of trial {s.best}",
                    (s.run, s.estimate),
                    fontsize=8,
                    textcoords="offset points",
                    xytext=(4, 8),
                    color="tab:blue",
                )
        last = steps[-1]
        ax.set_xlabel("completed runs, in order of completion")
        ax.set_ylabel(sweep.objective_label)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right" if sweep.maximize else "upper right")
        ax.set_title(
            f"Best configuration after each run: trial {last.best}'s, {last.estimate:.4g} over "
            f"{_plural(last.runs, 'run')}, best for the last {_plural(last.held, 'run')}"
        )
    fig.tight_layout()
    _save(fig, sweep.dir / "best_history.png")


def validation_graph(sweep: Sweep, validation: pd.DataFrame, top: int = 5) -> None:
    """Left: the top validated configurations' total_reward_ma, mean +- std over their fresh
    seeds, against frames. Right: search score beside validated score (the selection bias)."""
    fig = Figure(figsize=(13, 5))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    rows = validation.head(top)
    norm = Normalize(vmin=1, vmax=max(len(rows), 2))
    drawn = 0
    for i, (_, row) in enumerate(rows.iterrows(), start=1):
        path = validation_dir(sweep.dir, int(row["trial"])) / METRICS
        if not path.is_file():
            continue
        df = pd.read_csv(path).dropna(subset=["total_reward_ma"])
        stats = df.groupby("frame")["total_reward_ma"].agg(["mean", "std"]).fillna(0.0)
        x, mean, std = stats.index.to_numpy(), stats["mean"].to_numpy(), stats["std"].to_numpy()
        colour = RANK_CMAP(norm(i))
        sessions = df["session"].nunique()
        left.plot(
            x, mean, color=colour, lw=2, label=f"trial {int(row['trial'])} ({sessions} seeds)"
        )
        left.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
        drawn += 1
    if drawn:
        left.set_xlabel("frame (env steps)")
        left.set_ylabel("total_reward_ma, mean +- std over seeds")
        left.legend(fontsize=9)
        left.grid(alpha=0.3)
    else:
        _message(left, "no validation run has logged metrics")
    left.set_title("Validated runs of the top configurations")
    y = np.arange(len(rows))
    right.barh(y + 0.2, rows["search_score"], height=0.4, color="0.6", label="search score")
    right.barh(
        y - 0.2,
        rows["validated_mean"],
        height=0.4,
        xerr=rows["validated_std"],
        color="tab:blue",
        label="validated mean (+- std)",
    )
    right.set_yticks(y, [f"trial {int(t)}" for t in rows["trial"]])
    right.invert_yaxis()
    right.set_xlabel(sweep.objective_label)
    right.legend(fontsize=9)
    right.grid(axis="x", alpha=0.3)
    bias = rows["bias"].mean() if "bias" in rows else float("nan")
    right.set_title(f"Selection bias: search minus validated score, mean {bias:.3g}")
    fig.tight_layout()
    _save(fig, sweep.dir / "validation.png")


def compare_graph(sweeps: list, path: Path) -> None:
    """Searches side by side: best so far against complete trials and against frames trained
    (every finished trial's frames, stopped ones included), one line per search."""
    fig = Figure(figsize=(13, 5))
    by_trials, by_frames = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for sweep in sweeps:
        done = [
            t
            for t in sweep.trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.datetime_complete
        ]
        done.sort(key=lambda t: (t.datetime_complete, t.number))
        frames, best, n, xs, ys, fs = 0, None, 0, [], [], []
        for t in done:
            frames += int(t.user_attrs.get("frame") or 0)
            if t.state != TrialState.COMPLETE or t.value is None or not math.isfinite(t.value):
                continue
            n += 1
            better = best is None or (t.value > best if sweep.maximize else t.value < best)
            best = t.value if better else best
            xs.append(n)
            ys.append(best)
            fs.append(frames)
        label = f"{sweep.dir.name} ({_plural(n, 'complete trial')})"
        by_trials.step(xs, ys, where="post", lw=2, label=label)
        by_frames.step(fs, ys, where="post", lw=2, label=label)
    by_trials.set_xlabel("complete trials, in order of completion")
    by_frames.set_xlabel("frames trained by the search (all finished trials)")
    by_frames.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    for ax in (by_trials, by_frames):
        ax.set_ylabel("best objective so far")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle("Searches compared: best so far")
    fig.tight_layout()
    _save(fig, path)
