"""submitit SLURM executors from the Hydra submitit launcher's settings (`hydra.launcher.*`),
built as Hydra's launcher builds them, and the settings a trial ran with; shared by the
sweeper's jobs and validation."""

import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# launcher keys submitit's AutoExecutor takes under their own name; the rest get `slurm_`
_SHARED = {"timeout_min", "name", "nodes", "mem_gb", "cpus_per_task", "gpus_per_node"}
_SHARED |= {"tasks_per_node", "stderr_to_stdout"}
_INIT = ("max_num_timeout", "python")  # set when the executor is made, not per job
_NOT_SUBMITIT = ("_target_", "submitit_folder")  # Hydra's own


def submitit_names(params: dict[str, Any]) -> dict[str, Any]:
    """Hydra submitit launcher keys -> submitit AutoExecutor keys (None values dropped)."""
    return {k if k in _SHARED else f"slurm_{k}": v for k, v in params.items() if v is not None}


def executor(params: dict[str, Any], folder: Path):
    """A submitit SLURM executor writing into `folder` with the launcher settings `params`."""
    import submitit

    params = {k: v for k, v in params.items() if k not in _NOT_SUBMITIT}
    init = {f"slurm_{k}": params.pop(k) for k in _INIT if k in params}
    ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm", **init)
    ex.update_parameters(**submitit_names(params))
    return ex


def trial_params(run_dir: Path) -> dict[str, Any] | None:
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


def trial_requeue(run_dir: Path) -> bool:
    """hydra.sweeper.requeue of the search a trial ran in (its .hydra/hydra.yaml): whether a job
    that ended without a result (cancelled, killed, node failure) is submitted again."""
    path = run_dir / ".hydra" / "hydra.yaml"
    return path.is_file() and bool(OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.requeue"))
