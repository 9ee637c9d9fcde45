"""The best configurations as configs that train with one command (best.yaml, top_k/), and
the trials' own command lines: the API validation re-runs trials with."""

import logging
import math
import shlex
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from rlhp.record import Sweep, config_path, overrides_path, write_atomic

log = logging.getLogger("rlhp.analyze")
TOP = 5  # configurations in best.yaml + top_k/ and in importance.yaml


def plain(v: Any) -> Any:
    """A value YAML can write: numpy scalars to Python, tuples to lists."""
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, tuple | list):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def train_command(sweep: Sweep, name: str, folder: Path | None = None) -> str:
    folder = folder or sweep.dir
    return f"python -m rlhp.train --config-dir {shlex.quote(str(folder))} --config-name {name}"


def app_args(sweep: Sweep) -> list[str]:
    """The --config-dir / --config-name the search ran with: its trials' overrides need them."""
    out: list[str] = []
    if sweep.hydra is None:
        return out
    for src in OmegaConf.select(sweep.hydra, "runtime.config_sources", default=None) or []:
        if src.get("provider") == "command-line" and src.get("schema") == "file":
            out += ["--config-dir", str(src.path)]
    name = OmegaConf.select(sweep.hydra, "job.config_name", default=None)
    if name and name != "config":
        out += ["--config-name", str(name)]
    return out


def trial_overrides(sweep: Sweep, number: int) -> list[str] | None:
    """The trial's own overrides (.hydra/overrides.yaml), None if it has none."""
    path = overrides_path(sweep.trial_dir(number))
    if not path.is_file():
        return None
    return [str(o) for o in OmegaConf.to_container(OmegaConf.load(path))]


def override_command(sweep: Sweep, number: int) -> str | None:
    """The trial's own command line (its overrides on the app's config), if it has one."""
    overrides = trial_overrides(sweep, number)
    if overrides is None:
        return None
    return " ".join(["python -m rlhp.train", *map(shlex.quote, app_args(sweep) + overrides)])


def config_text(sweep: Sweep, row: pd.Series, header: list[str]) -> str | None:
    """The trial's composed config (minus hydra's node) with a small hydra node of its own, so
    a run writes where the app's runs do; None if the trial folder has no config."""
    number = int(row["trial"])
    path = config_path(sweep.trial_dir(number))
    if not path.is_file():
        return None
    cfg = OmegaConf.load(path)
    if "hydra" in cfg:
        del cfg["hydra"]
    run_dir = "runs/${now:%Y-%m-%d_%H-%M-%S}_${algo.name}_${env.name}"
    if sweep.hydra is not None and "run" in sweep.hydra:
        run_dir = OmegaConf.to_container(sweep.hydra.run, resolve=False).get("dir") or run_dir
    cfg.hydra = {"run": {"dir": run_dir}, "job": {"chdir": False}}
    body = OmegaConf.to_yaml(cfg)
    return "".join(f"# {line}\n" if line else "#\n" for line in header) + body


def write_configs(sweep: Sweep, df: pd.DataFrame, top: int = TOP) -> list[dict]:
    """best.yaml and top_k/rank2.yaml ... for the best `top` complete trials."""
    top_dir = sweep.dir / "top_k"
    for old in top_dir.glob("rank*.yaml"):
        old.unlink()
    written = []
    complete = df[df["state"] == "complete"].head(top)
    for i, (_, row) in enumerate(complete.iterrows(), start=1):
        number = int(row["trial"])
        if i == 1:
            name, folder = "best", sweep.dir
        else:
            name, folder = f"rank{i}", top_dir
        cmd = train_command(sweep, name, folder)
        std = row["objective_std"]
        header = [
            f"rlhp: rank {i} of the search in {sweep.dir}: trial {number}",
            f"{sweep.objective_label} = {row['objective']:.6g}"
            + ("" if pd.isna(std) else f" (std {std:.3g} over {row['sessions']} session(s))"),
            "train it:",
            f"  {cmd}",
        ]
        if (alt := override_command(sweep, number)) is not None:
            header += ["or, with the search's own overrides on the app's config:", f"  {alt}"]
        text = config_text(sweep, row, header)
        if text is None:
            log.warning("trial %d has no .hydra/config.yaml: no %s.yaml", number, name)
            continue
        folder.mkdir(exist_ok=True)
        write_atomic(folder / f"{name}.yaml", text)
        written.append({"rank": i, "trial": number, "file": str(folder / f"{name}.yaml")})
        written[-1]["command"] = cmd
    if not written and (sweep.dir / "best.yaml").exists():
        (sweep.dir / "best.yaml").unlink()  # stale: no complete trial now (a new study)
    return written
