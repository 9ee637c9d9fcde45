"""A staged search (VBot's staged AutoML): hyperparameters and reward weights in turn, under one
budget.

    python -m rlhp.stage +search=ppo_hopper_reward --budget-hours 12 --hp-trials 8 \\
        --reward-generations 3 [OVERRIDES ...]

The space (the preset's and the command line's) splits in two: the reward weights
(`env.kwargs.*`, gym.make's keyword arguments) and the hyperparameters (the rest). Stage 0
searches the hyperparameters with the weights fixed at their config values, stage 1 (a
reward-weight generation) the weights with the hyperparameters fixed at stage 0's best, stage 2
the hyperparameters again with the weights fixed at stage 1's best, ...: each stage starts from
the best so far (fixed values, and the prior trial of its own dimensions). Every stage is an
ordinary search, `python -m rlhp.train -m`, in its own sweep dir (`stage<i>_hp`,
`stage<i>_reward`) under the stage dir (`hydra.sweep.dir`), with an equal share of the budget
left as its `budget_hours`. `stages.yaml` there is the one progress file; the same command
resumes (finished stages are kept, the interrupted one resumes as any search does). The
trials are ranked on the unshaped return (`objective=eval`): the weights cannot score
themselves, and stages compare.
"""

import argparse
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rlhp import record
from rlhp.config import shaped_objective
from rlhp.errors import RlhpError

PROGRESS = "stages.yaml"
REWARD = "env.kwargs."  # the searched keys of a reward-weight generation
POLL_S = 5.0  # stages.yaml follows the running stage this often
# what a stage's command sets itself (the user's overrides of these are left out)
OWN = ("hydra.sweep.dir", "hydra.sweeper.n_trials", "hydra.sweeper.budget_hours")


class StageError(RlhpError):
    """A staged search that cannot start or go on."""


def key(override: str) -> str:
    """The dotted key of a command-line override."""
    return override.split("=", 1)[0].lstrip("~+").strip()


def hydra_value(value: Any) -> str:
    """`value` as a Hydra override writes it."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(hydra_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def plan(generations: int) -> list[str]:
    """The kind of each stage: a hyperparameter stage, then a reward-weight generation, ..."""
    return ["hp", "reward"] * generations


def share(budget_hours: float | None, elapsed_s: float, stages_left: int) -> float | None:
    """Hours of the budget left for the next stage: an equal share of what is left (what a
    stage leaves unspent goes to the later ones); None without a budget."""
    if budget_hours is None:
        return None
    return (budget_hours * 3600 - elapsed_s) / stages_left / 3600


def compose(overrides: list[str]) -> DictConfig:
    """The composed config (with its hydra node) of the plain overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from rlhp.train import CONF_DIR

    with initialize_config_dir(CONF_DIR):
        return hydra_compose("config", overrides, return_hydra_config=True)


def searched(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The searched keys: the preset's space with the command line's dimensions added and its
    plain values removed."""
    from rlhp.sweep._space import parse

    return list(parse(dict(cfg.hydra.sweeper.params), overrides)[0])


def start_values(cfg: DictConfig, keys: list[str]) -> dict[str, Any]:
    """The config's value of each searched key (where stage 0 fixes the reward weights)."""
    out = {}
    for name in keys:
        value = OmegaConf.select(cfg, name, default=None)
        if value is None:
            raise StageError(
                f"searched {name} has no value in the config for the stages that fix it: set "
                "it in the preset (the env's default)"
            )
        out[name] = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
    return out


def stage_command(
    overrides: list[str], sub_dir: Path, n_trials: int, hours: float | None, entry: dict
) -> list[str]:
    """`python -m rlhp.train -m` for a stage: the user's overrides but those the stage sets, the
    other kind's keys fixed, the prior trial at the best so far of its own keys."""
    fixed, prior = entry["fixed"], entry["prior"]
    own = [o for o in overrides if key(o) not in {*OWN, *fixed}]
    cmd = [sys.executable, "-m", "rlhp.train", "-m", *own]
    cmd += [f"{k}={hydra_value(v)}" for k, v in fixed.items()]
    cmd += [f"hydra.sweep.dir={sub_dir}", f"hydra.sweeper.n_trials={n_trials}"]
    if hours is not None:
        cmd.append(f"hydra.sweeper.budget_hours={hours:.6g}")
    if prior:
        cmd.append(f"++hydra.sweeper.prior_values={hydra_value(prior)}")
    return cmd


def stage_best(sub_dir: Path) -> dict | None:
    """A finished stage's best trial: its number, its objective (the unshaped eval return),
    the shaped training return (`total_reward_ma`) beside it, its searched values."""
    path = sub_dir / "optimization_results.yaml"
    if not path.exists():
        return None
    results = OmegaConf.to_object(OmegaConf.load(path))
    trial = record.TrialResult.read(record.trial_dir(sub_dir, results["best_trial"]))
    return {
        "trial": results["best_trial"],
        "value": results["best_value"],
        "total_reward_ma": trial.final,
        "params": results["best_params"],
    }


def read_state(sub_dir: Path) -> dict:
    """The stage's trial counts (`trials`) and, when its budget ended it, `ended_by`, from its
    state.yaml."""
    path = sub_dir / record.STATE
    if not path.exists():
        return {}
    state = OmegaConf.to_object(OmegaConf.load(path))
    counts = {k: state[k] for k in ("complete", "stopped", "failed", "running")}
    return {"trials": counts} | {k: state[k] for k in ["ended_by"] if k in state}


class Stages:
    """The stage dir, its progress file, and the stages run in turn."""

    def __init__(self, args: argparse.Namespace, overrides: list[str]):
        cfg = compose([o for o in overrides if not searched_line(o)])
        keys = searched(cfg, overrides)
        reward = [k for k in keys if k.lstrip("+").startswith(REWARD)]
        hp = [k for k in keys if k not in reward]
        if not reward or not hp:
            raise StageError(
                f"a staged search needs searched hyperparameters and reward weights "
                f"({REWARD}*); the space has {keys}"
            )
        if problem := shaped_objective(reward, cfg.objective):
            raise StageError(problem)
        self.args, self.overrides = args, overrides
        self.dir = Path(cfg.hydra.sweep.dir)
        self.maximize = cfg.hydra.sweeper.direction == "maximize"
        self.keys = {"hp": hp, "reward": reward}
        path = self.dir / PROGRESS
        self.progress = OmegaConf.to_object(OmegaConf.load(path)) if path.exists() else {}
        self.progress |= {
            "budget_hours": args.budget_hours,
            "hp_trials": args.hp_trials,
            "reward_trials": args.reward_trials,
            "reward_generations": args.reward_generations,
            "objective": str(cfg.objective),
            "searched": self.keys,
        }
        self.progress.setdefault("elapsed_s", 0.0)
        self.progress.pop("ended_by", None)  # a larger budget goes on
        self.progress.setdefault("stages", [])
        self.current = start_values(cfg, keys)  # the best so far of every searched key
        for entry in self.progress["stages"]:
            if entry.get("best"):
                self.current |= entry["best"]["params"]

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        text = OmegaConf.to_yaml(OmegaConf.create(self.progress))
        record.write_atomic(self.dir / PROGRESS, text)

    def entry(self, i: int, kind: str) -> dict:
        """Stage i's record: kept from an earlier run of the command, else a new one."""
        stages = self.progress["stages"]
        if i < len(stages):
            return stages[i]
        own = self.keys[kind]
        stages.append(
            {
                "stage": i,
                "kind": kind,
                "dir": f"stage{i}_{kind}",
                "fixed": {k: v for k, v in self.current.items() if k not in own},
                "prior": {k: self.current[k] for k in own} if i >= 2 else {},
                "state": "running",
                "elapsed_s": 0.0,
            }
        )
        return stages[-1]

    def run(self) -> int:
        kinds = plan(self.args.reward_generations)
        stages = self.progress["stages"]
        for i, kind in enumerate(kinds):
            if i < len(stages) and stages[i]["state"] == "complete":
                continue
            hours = share(self.args.budget_hours, self.progress["elapsed_s"], len(kinds) - i)
            if hours is not None and hours <= 0:
                return self.budget_ended(i)
            entry = self.entry(i, kind)
            n_trials = self.args.hp_trials if kind == "hp" else self.args.reward_trials
            if (rc := self.run_stage(entry, n_trials, hours)) != 0:
                return rc
            if (best := stage_best(self.dir / entry["dir"])) is None:
                if entry.get("ended_by"):
                    return self.budget_ended(i)
                raise StageError(f"stage {i} ({entry['dir']}) ended with no complete trial")
            entry["best"], entry["state"] = best, "complete"
            self.current |= best["params"]
            self.progress["best"] = self.best()
            self.save()
        best = self.progress["best"]
        print(
            f"rlhp.stage: best {best['value']:.4g} ({self.progress['objective']}): stage "
            f"{best['stage']} trial {best['trial']}; python -m rlhp.train --config-dir "
            f"{self.dir / best['dir']} --config-name best",
            file=sys.stderr,
        )
        return 0

    def best(self) -> dict:
        """The best stage (by its best trial), with every searched value it trained with."""
        done = [e for e in self.progress["stages"] if e.get("best")]
        sign = 1 if self.maximize else -1
        top = max(done, key=lambda e: sign * e["best"]["value"])
        out = {"stage": top["stage"], "dir": top["dir"], **top["best"]}
        return out | {"params": {**top["fixed"], **top["best"]["params"]}}

    def budget_ended(self, i: int) -> int:
        """The budget is spent with stage i unfinished: the search ends with its best so far."""
        self.progress["ended_by"] = f"budget_hours={self.args.budget_hours:g}"
        self.save()
        print(
            f"rlhp.stage: budget_hours={self.args.budget_hours:g} ended the staged search at "
            f"stage {i}; the best so far is in {self.dir / PROGRESS}",
            file=sys.stderr,
        )
        return 0

    def run_stage(self, entry: dict, n_trials: int, hours: float | None) -> int:
        """Run the stage's search to its end; stages.yaml follows it every POLL_S."""
        sub_dir = self.dir / entry["dir"]
        entry["state"] = "running"
        if hours is not None:
            hours += entry["elapsed_s"] / 3600  # the sweeper counts its earlier runs too
        cmd = stage_command(self.overrides, sub_dir, n_trials, hours, entry)
        entry["command"] = shlex.join(["python", *cmd[1:]])
        self.save()
        print(f"rlhp.stage: stage {entry['stage']} ({entry['kind']}): {sub_dir}", file=sys.stderr)
        proc = subprocess.Popen(cmd)
        term = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        last = time.time()
        try:
            while True:
                try:
                    rc = proc.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    rc = None
                except KeyboardInterrupt:  # Ctrl+C reached the search too: it checkpoints
                    rc = proc.wait()
                now = time.time()
                entry["elapsed_s"] += now - last
                self.progress["elapsed_s"] += now - last
                last = now
                entry |= read_state(sub_dir)
                self.save()
                if rc is not None:
                    break
        finally:
            signal.signal(signal.SIGTERM, term)
        if rc in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            print("rlhp.stage: stopped; run the same command to resume", file=sys.stderr)
        elif rc != 0:
            entry["state"] = "failed"
            self.save()
            print(f"rlhp.stage: error: stage {entry['stage']} failed (exit {rc})", file=sys.stderr)
        return rc


def searched_line(override: str) -> bool:
    """Whether a command-line override adds a search dimension (not a plain value)."""
    from rlhp.sweep._space import parse

    return bool(parse({}, [override])[0])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rlhp.stage",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="OVERRIDES: as for python -m rlhp.train -m (+search=NAME, searched dimensions)",
    )
    p.add_argument("--budget-hours", type=float, help="for all stages together (default: none)")
    p.add_argument("--hp-trials", type=int, default=8, help="trials per hyperparameter stage")
    p.add_argument("--reward-generations", type=int, default=3, help="reward-weight stages")
    p.add_argument("--reward-trials", type=int, help="trials per generation (default: hp-trials)")
    p.add_argument("overrides", nargs="*")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    args.reward_trials = args.reward_trials or args.hp_trials
    wrong = [
        (name, value)
        for name, value in (
            ("--hp-trials", args.hp_trials),
            ("--reward-trials", args.reward_trials),
            ("--reward-generations", args.reward_generations),
        )
        if value < 1
    ]
    if args.budget_hours is not None and not args.budget_hours > 0:
        wrong.append(("--budget-hours", args.budget_hours))
    try:
        if wrong:
            raise StageError(f"{wrong[0][0]} must be positive, got {wrong[0][1]}")
        return Stages(args, args.overrides).run()
    except RlhpError as e:
        print(f"rlhp.stage: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
