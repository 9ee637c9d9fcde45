"""submitit SLURM executors from the Hydra submitit launcher's settings (`hydra.launcher.*`),
built as Hydra's launcher builds them; shared by the sweeper's host jobs and validation."""

from pathlib import Path
from typing import Any

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
