"""Search quality at equal wall-clock: PPO on CartPole-v1 (or `--preset ppo_acrobot`: Acrobot-v1,
whose best lies below a ceiling), rlhp against the searches a user would run instead (issue
#22). Each contender searches for `--minutes` of wall-clock on this machine, `--reps` times
with sampler seeds 0, 1, ...; its pick (the best complete trial by its own search metric, among
the trials finished within the budget) is re-trained on `--seeds` fresh seeds (50000, 50001,
...: no search trains on them) and scored by the mean return of `--eval-episodes` greedy
episodes of the final policy, averaged over the seeds:

  batched  python -m rlhp.train -m +search=PRESET (the README's search: population 4, ASHA)
           hydra.sweeper.budget_hours=MINUTES/60 hydra.sweeper.sampler.seed=R
  p1       the same with hydra.sweeper.population=1 (one process per trial)
  g2, g4   the batched search with hydra.sweeper.structure_groups=2 or 4 (a population job
           trains 2 or 4 structures at once, each a group of population / G trials)
  stock    python -m rlhp.train -m hydra/sweeper=optuna (the Hydra Optuna sweeper: TPE, n_jobs =
           slots through the submitit_local launcher, no pruning) on the preset's space (its
           hid_layers lists as strings, which Hydra parses back; no constraints: the stock
           sweeper has none), the preset's frames; stopped at the budget (SIGTERM)
  zoo      python -m rl_zoo3.train --algo ppo --env ENV_ID -optimize --n-jobs SLOTS
           --sampler tpe --pruner median --seed R (its own space and n_timesteps), with a journal
           storage to read its trials; stopped at the budget with SIGINT (Ctrl+C: it then writes
           its report); run in the venv of benchmarks/zoo_venv.sh

The rlhp and stock picks re-train with `python -m rlhp.train <pick> seed=50000 max_session=S
eval_episodes=E` at the preset's frames (one population of S seeds); the zoo's pick with SB3 PPO
at the zoo's n_timesteps (benchmarks/_zoo_retrain.py, one process per seed). The anytime curve
validates the incumbent at 1/3, 2/3 and 3/3 of the budget. Every process runs with
OMP_NUM_THREADS=1. Resumable: a finished search (search.json in its dir) or validation run
(its result file) is kept; an unfinished search is started again. Raw results go to OUT.json,
the figure to OUT.png, beside OUT (default benchmarks/search_quality.md).

    python benchmarks/search_quality.py                       # 6 x 3 x 6 min of search + validation
    python benchmarks/search_quality.py --minutes 0.5 --reps 1 --seeds 2 --frames 6000 \\
        --zoo-frames 8000 --work /tmp/sq --out /tmp/sq/search_quality.md       # a smoke run
"""

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from _machine import take_machine  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from rlhp.config import signature  # noqa: E402

HERE = Path(__file__).resolve().parent
CONF = HERE.parent / "conf"
# the searched preset (--preset; set by use_preset): its config, space and env
PRESET = OmegaConf.load(CONF / "search" / "ppo_cartpole.yaml")
SPACE: dict[str, str] = OmegaConf.to_container(PRESET.hydra.sweeper.params)
ENV_NAME, ENV_ID = "cartpole", "CartPole-v1"
SEED_BASE = 50_000
FRACTIONS = (1 / 3, 2 / 3, 1.0)
MANY = 100_000  # n_trials of a search that the budget ends
CONTENDERS = {
    "batched": "rlhp batched (README default)",
    "p1": "rlhp, one process per trial",
    "g2": "rlhp batched, 2 structure groups",
    "g4": "rlhp batched, 4 structure groups",
    "stock": "stock Hydra Optuna sweeper",
    "zoo": "rl-baselines3-zoo tuner",
}
# seconds past the budget before the stop signal, the signal, whether to its process group
STOP = {
    "batched": (30, signal.SIGTERM, False),  # budget_hours ends it; running trials finish
    "p1": (30, signal.SIGTERM, False),
    "g2": (30, signal.SIGTERM, False),
    "g4": (30, signal.SIGTERM, False),
    "stock": (0, signal.SIGTERM, True),
    "zoo": (0, signal.SIGINT, False),
}
GROUPS = {"g2": 2, "g4": 4}  # the batched search with hydra.sweeper.structure_groups=G
BATCHED = ("batched", *GROUPS)  # rlhp's batched variants; the goals compare them to the others
GRACE = 120  # seconds after the stop signal before the process group is killed
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def use_preset(name: str) -> None:
    """Search conf/search/NAME.yaml (a PPO preset): its space, frames and env."""
    global PRESET, SPACE, ENV_NAME, ENV_ID
    PRESET = OmegaConf.load(CONF / "search" / f"{name}.yaml")
    SPACE = OmegaConf.to_container(PRESET.hydra.sweeper.params)
    groups = [d for d in PRESET.defaults if isinstance(d, DictConfig)]
    ENV_NAME = next(v for d in groups for k, v in d.items() if k.endswith("/env"))
    ENV_ID = OmegaConf.load(CONF / "env" / f"{ENV_NAME}.yaml").id


def frame_overrides(frames: int | None, asha: bool) -> list[str]:
    """max_frame and log_frequency (the preset's unless `frames`); ASHA's grace scaled along."""
    if frames is None:
        return [f"env.max_frame={PRESET.env.max_frame}", f"log_frequency={PRESET.log_frequency}"]
    out = [f"env.max_frame={frames}", f"log_frequency={frames // 10}"]
    return out + ([f"meta.search_scheduler.grace_period={frames // 10}"] if asha else [])


def stock_value(value: str) -> str:
    """The stock sweeper's choice takes no lists: `choice([64,64], ...)` as strings."""
    return re.sub(r"\[[^\]]*\]", lambda m: f'"{m.group(0)}"', value)


def search_command(contender: str, seed: int, sweep_dir: Path, args) -> list[str]:
    if contender == "zoo":
        cmd = [str(args.zoo_python), "-m", "rl_zoo3.train", "--algo", "ppo"]
        cmd += ["--env", ENV_ID, "-optimize", "--n-jobs", str(args.slots)]
        cmd += ["--sampler", "tpe", "--pruner", "median", "--seed", str(seed)]
        cmd += ["--storage", str(sweep_dir / "study.log"), "--study-name", "zoo"]
        cmd += ["-f", str(sweep_dir / "logs"), "--no-optim-plots"]
        return cmd + (["-n", str(args.zoo_frames)] if args.zoo_frames else [])
    cmd = [sys.executable, "-m", "rlhp.train", "-m", f"hydra.sweep.dir={sweep_dir}"]
    cmd += [f"hydra.sweeper.n_trials={MANY}", f"hydra.sweeper.sampler.seed={seed}"]
    if contender == "stock":
        cmd += ["hydra/sweeper=optuna", "hydra.sweeper.direction=maximize", "algo=ppo"]
        cmd += [f"env={ENV_NAME}"]
        cmd += [f"hydra.sweeper.n_jobs={args.slots}", *frame_overrides(args.frames, asha=False)]
        return cmd + [f"{key}={stock_value(value)}" for key, value in SPACE.items()]
    cmd += [f"+search={args.preset}", f"hydra.sweeper.budget_hours={args.minutes / 60}"]
    cmd += [f"hydra.sweeper.max_concurrent={args.slots}"]
    cmd += frame_overrides(args.frames, asha=True) if args.frames else []
    if contender in GROUPS:
        cmd += [f"hydra.sweeper.structure_groups={GROUPS[contender]}"]
    return cmd + (["hydra.sweeper.population=1"] if contender == "p1" else [])


def run_search(contender: str, seed: int, sweep_dir: Path, args) -> dict:
    """One search under the wall-clock budget; its search.json (launch time, wall) marks it
    done. Stopped as STOP says, its process group killed GRACE seconds later."""
    done = sweep_dir / "search.json"
    if done.exists():
        return json.loads(done.read_text())
    shutil.rmtree(sweep_dir, ignore_errors=True)  # an unfinished search starts again
    sweep_dir.mkdir(parents=True)
    cmd = search_command(contender, seed, sweep_dir, args)
    budget = args.minutes * 60
    after, stop, group = STOP[contender]
    with (sweep_dir / "search.log").open("w") as log:
        launch = time.time()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=sweep_dir,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=budget + after)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, stop) if group else proc.send_signal(stop)
            try:
                proc.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):  # what it left behind
            os.killpg(proc.pid, signal.SIGKILL)
    record = {"cmd": cmd, "launch": launch, "wall_s": time.time() - launch, "rc": proc.returncode}
    done.write_text(json.dumps(record, indent=1))
    print(f"{sweep_dir.name} (sampler seed {seed}): {record['wall_s']:.0f} s", file=sys.stderr)
    return record


def dig(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


def hydra_trials(sweep_dir: Path, launch: float) -> list[dict]:
    """rlhp's trials (also the stock sweeper's: rlhp.train writes them): state, search metric
    (the objective), finish time from launch, the searched values, structure, training wall."""
    trials = []
    for path in sweep_dir.glob("*/result.yaml"):
        result = OmegaConf.load(path)
        cfg = OmegaConf.load(path.parent / ".hydra" / "config.yaml")
        tree = OmegaConf.to_container(cfg, resolve=True)
        trials.append(
            {
                "trial": int(path.parent.name),
                "state": result.state,
                "value": result.objective,
                "t": path.stat().st_mtime - launch,
                "pick": {key: dig(tree, key) for key in SPACE},
                "structure": json.dumps(signature(cfg), sort_keys=True, default=str),
                "wall_s": result.wall_s,
            }
        )
    return sorted(trials, key=lambda t: t["trial"])


def zoo_trials(sweep_dir: Path, launch: float) -> list[dict]:
    """The zoo's trials from its study: its metric is the mean of 5 deterministic evaluation
    episodes at the end of training; a trial the median pruner stopped is `stopped`."""
    backend = optuna.storages.journal.JournalFileBackend(str(sweep_dir / "study.log"))
    study = optuna.load_study(study_name="zoo", storage=optuna.storages.JournalStorage(backend))
    states = {"COMPLETE": "complete", "PRUNED": "stopped", "FAIL": "failed"}
    return [
        {
            "trial": t.number,
            "state": states[t.state.name],
            "value": t.value,
            "t": t.datetime_complete.timestamp() - launch,
            "pick": t.params,
        }
        for t in study.trials
        if t.state.name in states
    ]


def incumbent(trials: list[dict], seconds: float) -> dict | None:
    """The best complete trial finished within `seconds` of the launch."""
    done = [t for t in trials if t["state"] == "complete" and t["t"] <= seconds]
    return max(done, key=lambda t: t["value"], default=None)


def search_figures(contender: str, trials: list[dict], wall: float, args) -> dict:
    """Trial counts within the budget; structures and member-slot use for the Hydra ones."""
    within = [t for t in trials if t["t"] <= args.minutes * 60]
    figures = {state: sum(t["state"] == state for t in within) for state in ("complete", "stopped")}
    if contender != "zoo":
        population = PRESET.hydra.sweeper.population if contender in BATCHED else 1
        figures["structures"] = len({t["structure"] for t in trials})
        busy = sum(t["wall_s"] for t in trials)
        figures["slot_use"] = busy / (args.slots * population * wall)
    return figures


def rlhp_value(value) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, list) else repr(value)


def kind(contender: str) -> str:
    """How a contender's pick is re-trained: with rlhp.train or with SB3 (the zoo's)."""
    return "zoo" if contender == "zoo" else "rlhp"


def pick_key(kind: str, pick: dict) -> str:
    return hashlib.sha1(json.dumps([kind, pick], sort_keys=True).encode()).hexdigest()[:12]


def validate(kind: str, pick: dict, args) -> dict:
    """Re-train a pick on the validation seeds (kept: a run with its result is not redone);
    the mean over seeds of the final greedy evaluation return."""
    run_dir = args.work / "validation" / f"{kind}-{pick_key(kind, pick)}"
    if kind == "rlhp":
        cmd = [sys.executable, "-m", "rlhp.train", f"+search={args.preset}"]
        cmd += frame_overrides(args.frames, asha=False)
        cmd += [f"{k}={rlhp_value(v)}" for k, v in pick.items()]
        cmd += [f"seed={SEED_BASE}", f"max_session={args.seeds}"]
        cmd += [f"eval_episodes={args.eval_episodes}", f"hydra.run.dir={run_dir}"]
        if not (run_dir / "result.yaml").exists():
            subprocess.run(cmd, check=True, capture_output=True, env=ENV)
        result = OmegaConf.load(run_dir / "result.yaml")
        per_seed = [float(s.eval) for s in result.sessions]
        return {"eval": statistics.mean(per_seed), "per_seed": per_seed, "frames": result.frame}
    runs = []
    for seed in range(SEED_BASE, SEED_BASE + args.seeds):
        out = run_dir / f"seed{seed}.json"
        if not out.exists():
            cmd = [str(args.zoo_python), str(HERE / "_zoo_retrain.py"), json.dumps(pick)]
            cmd += [str(seed), "--eval-episodes", str(args.eval_episodes), "--env", ENV_ID]
            cmd += ["--frames", str(args.zoo_frames)] if args.zoo_frames else []
            done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=ENV)
            run_dir.mkdir(parents=True, exist_ok=True)
            out.write_text(done.stdout.strip().splitlines()[-1])
        runs.append(json.loads(out.read_text()))
    per_seed = [r["eval"] for r in runs]
    return {"eval": statistics.mean(per_seed), "per_seed": per_seed, "frames": runs[0]["frames"]}


def collect(args) -> list[dict]:
    """Every search (running those not done), its trials, incumbents and their validation."""
    rows = []
    for rep in range(args.reps):
        names = list(args.contenders)
        for contender in names[rep % len(names) :] + names[: rep % len(names)]:
            sweep_dir = args.work / f"rep{rep}" / contender
            search = run_search(contender, rep, sweep_dir, args)
            read = zoo_trials if contender == "zoo" else hydra_trials
            trials = read(sweep_dir, search["launch"])
            row = {"rep": rep, "seed": rep, "contender": contender, "cmd": search["cmd"]}
            row["wall_s"] = search["wall_s"]
            row |= search_figures(contender, trials, search["wall_s"], args)
            row["anytime"] = [
                {"minutes": f * args.minutes, "incumbent": incumbent(trials, f * args.minutes * 60)}
                for f in FRACTIONS
            ]
            row["trials"] = trials
            rows.append(row)
    points = [(kind(r["contender"]), p) for r in rows for p in r["anytime"] if p["incumbent"]]
    jobs = {pick_key(k, p["incumbent"]["pick"]): (k, p["incumbent"]["pick"]) for k, p in points}
    with ThreadPoolExecutor(args.slots) as pool:  # a pick at a time in each slot
        results = pool.map(lambda job: validate(*job, args), jobs.values())
        done = dict(zip(jobs, results, strict=True))
    for k, point in points:
        point["validated"] = done[pick_key(k, point["incumbent"]["pick"])]
    return rows


def validated(rows: list[dict], i: int) -> list[float]:
    """The validated returns of the incumbents at FRACTIONS[i], one per repetition."""
    points = [r["anytime"][i] for r in rows]
    return [p["validated"]["eval"] for p in points if p.get("validated")]


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def setup_rows(rows: list[dict], args) -> list[str]:
    """What each contender trains per trial, ranks on, and how its pick is validated."""
    frames = args.frames or PRESET.env.max_frame
    retrained = [p.get("validated") for r in rows if r["contender"] == "zoo" for p in r["anytime"]]
    zoo = next((v["frames"] for v in retrained if v), args.zoo_frames or 100_000)
    rlhp = f"{frames:,} frames, ASHA (grace {frames // 10:,}, rf 2)"
    asked = {
        "batched": (rlhp, f"population {PRESET.hydra.sweeper.population}"),
        "p1": (rlhp, "population 1"),
        **{
            c: (rlhp, f"population {PRESET.hydra.sweeper.population}, {g} structure groups")
            for c, g in GROUPS.items()
        },
        "stock": (f"{frames:,} frames, no pruning", "batches of n_jobs"),
        "zoo": (f"{zoo:,} timesteps, median pruner", "its own space"),
    }
    ranks = "final `total_reward_ma` (mean return of the last 100 training episodes)"
    lines = [
        "| contender | per trial | search | ranks trials on | pick re-trained |",
        "|---|---|---|---|---|",
    ]
    for contender in args.contenders:
        budget, note = asked[contender]
        metric = "mean of 5 deterministic eval episodes" if contender == "zoo" else ranks
        again = f"SB3 PPO, {zoo:,} timesteps" if contender == "zoo" else f"rlhp, {frames:,} frames"
        lines.append(f"| {CONTENDERS[contender]} | {budget} | {note} | {metric} | {again} |")
    return lines


def commands(rows: list[dict], args) -> list[str]:
    """Each contender's command as the first repetition ran it (WORK: the --work dir)."""
    lines = []
    for contender in args.contenders:
        cmd = next(r["cmd"] for r in rows if r["contender"] == contender)
        names = {sys.executable: "python", str(args.zoo_python): "ZOO_VENV/bin/python"}
        text = shlex.join(names.get(c, c) for c in cmd).replace(str(args.work), "WORK")
        lines.append(f"- {CONTENDERS[contender]}: `{text}`")
    return lines + [
        "- the stock sweeper has no constraints (the preset's two are not applied there); rlhp and "
        "the stock sweeper rank trials on the training return, the zoo on evaluation episodes; "
        "every pick is validated the same way, on greedy episodes of its final policy"
    ]


def summary_rows(rows: list[dict], args) -> list[str]:
    lines = [
        "| contender | **validated return of the pick**, median [range] | at 1/3 of the budget "
        "| at 2/3 | search's best (own metric) | trials complete / stopped | structures "
        "| member-slot use |",
        "|---|---|---|---|---|---|---:|---:|",
    ]
    for contender in args.contenders:
        mine = [r for r in rows if r["contender"] == contender]
        best = [p["incumbent"]["value"] for r in mine if (p := r["anytime"][-1])["incumbent"]]
        counts = [f"{statistics.median(r[k] for r in mine):g}" for k in ("complete", "stopped")]
        hydra = contender != "zoo"
        structures = f"{statistics.median(r['structures'] for r in mine):g}" if hydra else "-"
        use = f"{statistics.median(r['slot_use'] for r in mine):.0%}" if hydra else "-"
        lines.append(
            f"| {CONTENDERS[contender]} | **{spread(validated(mine, 2))}** "
            f"| {spread(validated(mine, 0))} | {spread(validated(mine, 1))} | {spread(best)} "
            f"| {' / '.join(counts)} | {structures} | {use} |"
        )
    return lines


def rep_rows(rows: list[dict]) -> list[str]:
    lines = [
        "| rep | contender | wall s | complete / stopped | structures | slot use "
        "| pick (trial: search metric) at 1/3, 2/3, 3/3 | validated at 1/3, 2/3, 3/3 |",
        "|---:|---|---:|---|---:|---:|---|---|",
    ]
    for r in rows:
        picks = [p["incumbent"] for p in r["anytime"]]
        named = ", ".join(f"{p['trial']}: {p['value']:.1f}" if p else "-" for p in picks)
        values = ", ".join(
            f"{p['validated']['eval']:.1f}" if p.get("validated") else "-" for p in r["anytime"]
        )
        use = f"{r['slot_use']:.0%}" if "slot_use" in r else "-"
        lines.append(
            f"| {r['rep']} | {r['contender']} | {r['wall_s']:.0f} | {r['complete']} / "
            f"{r['stopped']} | {r.get('structures', '-')} | {use} | {named} | {values} |"
        )
    return lines


def goals(rows: list[dict], args) -> list[str]:
    """Issue #22's goals on the medians over repetitions (no pick yet: -inf): batched's pick >=
    every other contender's, and batched at 1/3 of the budget >= the best peer's final level."""

    def median(contender: str, i: int) -> float:
        values = validated([r for r in rows if r["contender"] == contender], i)
        return statistics.median(values) if values else float("-inf")

    peers = [c for c in args.contenders if c not in BATCHED]
    if "batched" not in args.contenders or not peers:
        return []
    top = max(median(c, 2) for c in peers)
    final, early = median("batched", 2), median("batched", 0)
    return [
        f"- goal, rlhp batched's pick >= every other contender's (medians): "
        f"**{'met' if final >= top else 'not met'}** ({final:.1f} vs the best peer's {top:.1f})",
        f"- goal, rlhp batched at 1/3 of the budget >= the best peer's final level: "
        f"**{'met' if early >= top else 'not met'}** "
        f"({f'{early:.1f}' if early > float('-inf') else 'no complete trial by then'})",
    ]


def plot(rows: list[dict], args, path: Path) -> None:
    """Validated return of the incumbent against wall-clock: median and range over reps."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    minutes = [f * args.minutes for f in FRACTIONS]
    for contender in args.contenders:
        mine = [r for r in rows if r["contender"] == contender]
        points = [(m, v) for i, m in enumerate(minutes) if (v := validated(mine, i))]
        if not points:
            continue
        x = [m for m, _ in points]
        ax.plot(x, [statistics.median(v) for _, v in points], "o-", label=CONTENDERS[contender])
        ax.fill_between(x, [min(v) for _, v in points], [max(v) for _, v in points], alpha=0.15)
    ax.set_xlabel("search wall-clock (minutes)")
    ax.set_ylabel(f"validated return of the incumbent ({args.seeds} fresh seeds)")
    ax.set_title(f"PPO {ENV_ID}: search quality at equal wall-clock")
    ax.set_xlim(0, args.minutes * 1.05)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(rows: list[dict], args, where: str) -> str:
    lines = [
        f"## Search quality at equal wall-clock: PPO on {ENV_ID} (`benchmarks/search_quality.py`)",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- date: {date.today()}; machine: {where}",
        f"- {args.minutes:g} min of wall-clock per search, {args.slots} parallel slots, "
        f"{args.reps} repetitions (sampler seeds 0-{args.reps - 1}), contenders in rotating "
        f"order; picks validated on seeds {SEED_BASE}-{SEED_BASE + args.seeds - 1} with "
        f"{args.eval_episodes} greedy episodes of the final policy each (the mean over seeds)",
        "",
        *setup_rows(rows, args),
        "",
        *commands(rows, args),
        "",
        *summary_rows(rows, args),
        "",
        *goals(rows, args),
        "",
        f"![validated incumbent against wall-clock]({args.out.with_suffix('.png').name})",
        "",
        *rep_rows(rows),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=6.0, help="wall-clock budget per search")
    p.add_argument("--preset", default="ppo_cartpole", help="conf/search/NAME.yaml (PPO)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seeds", type=int, default=5, help="validation seeds per pick")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--frames", type=int, help="rlhp frames per trial (default: the preset's)")
    p.add_argument("--zoo-frames", type=int, help="zoo timesteps per trial (default: the zoo's)")
    p.add_argument("--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS))
    p.add_argument("--slots", type=int, default=len(os.sched_getaffinity(0)))
    venv = Path(os.environ.get("ZOO_VENV", "/tmp/rlhp-zoo-venv"))
    p.add_argument("--zoo-python", type=Path, default=venv / "bin" / "python")
    p.add_argument(
        "--work",
        type=Path,
        default=HERE.parent / "multirun" / "search_quality",
        help="search and validation dirs (a re-run resumes them)",
    )
    p.add_argument("--out", type=Path, default=HERE / "search_quality.md")
    args = p.parse_args()
    use_preset(args.preset)
    args.work = args.work.resolve()
    if "zoo" in args.contenders and not args.zoo_python.exists():
        sys.exit(f"search_quality: no {args.zoo_python}: run bash benchmarks/zoo_venv.sh first")
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("reps", "contenders", "out")}
    stored = args.work / "settings.json"
    if stored.exists() and json.loads(stored.read_text()) != settings:
        sys.exit(f"search_quality: {args.work} holds a run with other settings: use --work DIR")
    args.work.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(settings, indent=1))
    where = take_machine()
    rows = collect(args)
    raw = {"settings": settings, "machine": where, "date": str(date.today()), "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    plot(rows, args, args.out.with_suffix(".png"))
    text = report(rows, args, where)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
