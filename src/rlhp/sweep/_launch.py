"""One way to launch every job of a search, a trial (the app's task function) or a population job
(rlhp.batch.main, its own entry): through the configured Hydra launcher (submitit_local: one
process each; submitit_slurm), as SLURM jobs the search keeps (_slurm.Jobs: a job per trial,
whole GPUs) or on shared-GPU host jobs (_slurm.Packer: meta.search_resources.gpu < 1). One
requeue rule: a job that ends without a result is submitted again when SLURM preempted it, or
with hydra.sweeper.requeue=true, max_num_timeout times at most. One stop (Ctrl+C, SIGTERM): every
running job checkpoints and ends, not recorded, and the same command resumes it."""

import itertools
import logging
import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from rlhp import record
from rlhp.sweep import _local

log = logging.getLogger("rlhp.sweep")
LOCAL = ("LocalLauncher", "BasicLauncher")
T = TypeVar("T")


class Launch:
    def __init__(
        self,
        config: DictConfig,
        hydra_context: HydraContext,
        task_function: TaskFunction,
        requeue: bool,
    ):
        self.config, self.hydra_context, self.requeue = config, hydra_context, requeue
        self.trials = self._launcher(task_function)
        self.kind = type(self.trials).__name__
        self.here = self.kind in LOCAL  # trials run on this machine
        self.populations = None  # the launcher of population jobs, made on first use
        self.jobs = self.packer = None  # SLURM: a job per trial, or host jobs
        self.refused = False  # SLURM refused a job for good: the search stops
        self.stopping = False
        if self.kind == "LocalLauncher":
            _local.install()

    def _launcher(self, task_function: TaskFunction):
        return Plugins.instance().instantiate_launcher(
            config=self.config, hydra_context=self.hydra_context, task_function=task_function
        )

    def slots(self, max_concurrent: int | None, n_trials: int) -> int:
        """Jobs at once: CPU cores here, _slurm.slots on SLURM, n_trials on another cluster,
        unless max_concurrent says."""
        slots = max_concurrent or (os.cpu_count() if self.here else n_trials)
        if self.kind == "SlurmLauncher":
            from rlhp.sweep._slurm import slots as slurm_slots

            parallelism = self.trials.params.get("array_parallelism")
            slots, note = slurm_slots(max_concurrent, parallelism, n_trials)
            if note:
                log.warning("rlhp: warning: %s", note)
        if self.kind == "BasicLauncher" and slots > 1:
            log.warning("the basic launcher runs trials in this process: one slot only")
            slots = 1
        return slots

    def connect(self, sweep_dir: Path) -> None:
        """On SLURM: check the request against the partition (ConfigError before anything is
        submitted) and map meta.search_resources.gpu to whole GPUs per job, or to host jobs of
        round(1 / gpu) jobs each."""
        if self.kind != "SlurmLauncher":
            return
        from rlhp.sweep import _slurm

        params = self.trials.params
        gpu = OmegaConf.select(self.config, "meta.search_resources.gpu", default=0) or 0
        request = {"gpu": gpu, "cpu": params.get("cpus_per_task"), "mem_gb": params.get("mem_gb")}
        gpus = _slurm.gpu_request(params.get("gres"), math.ceil(gpu))  # ConfigError first
        typed = (gpus.get("gres") or "").split(",")[0].split(":")  # gpu:TYPE:N
        _slurm.check(params.get("partition"), request, typed[1] if len(typed) == 3 else None)
        prefix = f"rlhp_{sweep_dir.name}"  # job names: rlhp_<sweep dir>_<trial>
        if gpu >= 1:
            params.update(gpus)
        elif gpu > 0:
            per_gpu = round(1 / gpu)
            self.packer = _slurm.Packer(params, sweep_dir, prefix, per_gpu, self.requeue)
            log.info("%d jobs share each GPU (meta.search_resources.gpu=%s)", per_gpu, gpu)
        if self.packer is None:
            self.jobs = _slurm.Jobs(params, prefix)

    def run(self, number: int, overrides: list[str], population: bool = False) -> JobReturn:
        """Job `number` (a trial; with `population`, a population job) run to its end; its
        JobReturn. NotSubmitted (SLURM refused it for good) stops the search as Ctrl+C does."""
        from rlhp.slurm import NotSubmitted

        launcher = self.trials
        if population:
            if self.populations is None:
                from rlhp.batch import main

                self.populations = self._launcher(main)
            launcher = self.populations
        try:
            if self.packer is not None:
                return self.packer.run(number, overrides, launcher)
            job = partial(self.jobs.run if self.jobs else self._here, number, overrides, launcher)
            times = self.trials.params.get("max_num_timeout", 3)
            again = partial(log.warning, "job %d ended (%s): queued again", number)
            return requeued(job, self.requeue, times, again)
        except NotSubmitted:
            self.refused = True
            if population:  # the loop stops first (refused), or it would fail the job's trials
                (self.jobs or self.packer).stopping.wait()
            raise

    @staticmethod
    def _here(number: int, overrides: list[str], launcher) -> JobReturn:
        """Job `number` through the configured Hydra launcher (local processes, other clusters)."""
        return launcher.launch([overrides], initial_job_idx=number)[0]

    def stop(self) -> None:
        """Every running job (local process, SLURM job or host job) checkpoints and ends, not
        recorded and not requeued: its trials stay RUNNING and the same command resumes them."""
        self.stopping = True  # a job that ends now is not run again
        _local.stop()
        for jobs in (self.jobs, self.packer):
            if jobs is not None:
                jobs.stop()

    def close(self) -> None:
        """The search is over: idle host jobs end now."""
        if self.packer is not None:
            self.packer.close()


def requeued(
    run: Callable[[], T], requeue: bool, times: int, again: Callable[[Exception], None]
) -> T:
    """run()'s result. With requeue (hydra.sweeper.requeue), a run that ended without one
    (cancelled, killed, a node failure: an exception) runs again, `times` times at most, each
    announced by again(its error)."""
    for attempt in itertools.count(1):
        try:
            return run()
        except Exception as e:
            if not requeue or attempt > times:
                raise
            again(e)


def population_overrides(fixed: list[str], number: int) -> list[str]:
    """A population job's own config: the search's fixed overrides in its own folder (its size
    is its hydra.sweeper.population, which a job cannot change)."""
    return fixed + [f"hydra.sweep.subdir={record.POPULATIONS}/{number}"]
