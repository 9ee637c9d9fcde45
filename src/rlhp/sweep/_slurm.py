"""SLURM: a reachability check, trial jobs the sweeper can stop, and several trials sharing
one GPU. (Over 400 lines: the host-job protocol, its queue, the stop sequence and the check of
a search's request against sinfo belong together; the executor settings, submission retries and
end states shared with validation are in rlhp.slurm.)

Every job is submitted through rlhp.slurm.submit and Backoff: a submission SLURM refuses for a
passing reason (a submit limit, a busy controller) is tried again; one it refuses for good stops
the search as Ctrl+C does (NotSubmitted), its trial never started. Jobs are named
`rlhp_<sweep dir>_<N>`.

Trial (and population) jobs are submitted as Hydra's submitit launcher submits them, one submitit
job each, but kept (`Jobs`), so that Ctrl+C can stop them: `stop_jobs` sends SIGTERM to their
steps, where the trials run. A trial checkpoints on it and ends; submitit ignores SIGTERM, so
nothing is requeued (SIGUSR2 would be), and the trial stays RUNNING in the study: the same
command resumes it from its checkpoint. Host jobs (below) pass the signal on to their trials.

Host jobs each hold one GPU and run `per_gpu` trials at once.

SLURM allocates whole GPUs on most clusters, so `meta.search_resources.gpu: 0.125` cannot be a
job's request. Instead the sweeper submits *host* jobs (one GPU, per_gpu times the CPUs and
memory of a trial) through submitit. A host claims queued trials from the sweep dir by an atomic
rename, runs each in its own process exactly as the submitit launcher would run it (same Hydra
job, same trial directory, same ASHA reports), and writes the JobReturn back. A slot thread in
the sweeper waits for its trial's result, so slots stay asynchronous: the moment one trial ends,
its host claims the next.

Preemption: a host that receives SIGUSR2 (time limit) passes it to its trials, which
checkpoint; their claims go back to the queue and the sweeper starts a new host to resume them.
A trial preempted more than `max_num_timeout` times fails. On SIGTERM (SLURM's preemption signal,
and scancel's) the trials checkpoint and stay claimed, and the sweeper decides by the end state
SLURM recorded for the host job (rlhp.slurm.preempted): preempted, they are queued again;
CANCELLED, or a host that died without a word (node failure), they fail, unless
`hydra.sweeper.requeue=true`. A trial job is decided the same way (Jobs.run).

Queue layout under <sweep>/.queue: pending/<n>.pkl, claimed/<host>/<n>.pkl, done/<n>.pkl.
"""

import contextlib
import io
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from submitit.core.utils import FailedJobError, UncompletedJobError

from rlhp.errors import ConfigError
from rlhp.record import JOB_BASE, write_atomic
from rlhp.slurm import (
    Backoff,
    end_state,
    executor,
    gpu_request,
    preempted,
    scancel,
    stop_jobs,
    submit,
)
from rlhp.sweep._results import one_line

log = logging.getLogger("rlhp.sweep")
PREEMPTED = 3  # exit code of a trial process that checkpointed on SIGUSR2 (time limit)
TERMINATED = 4  # ... on SIGTERM (preemption, scancel)
# killed by SIGTERM or SIGKILL from outside (srun reports 128 + signal): a trial signalled before
# it could checkpoint, such as one preempted while it starts
SIGTERMED = {-signal.SIGTERM, 128 + signal.SIGTERM}
SIGNALLED = SIGTERMED | {-signal.SIGKILL, 128 + signal.SIGKILL}


def _dump(obj: Any, path: Path) -> None:
    write_atomic(path, cloudpickle.dumps(obj))


def _load(path: Path) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


class Queue:
    """Job specs (a trial, or a population job) handed to whichever host job claims them: moved
    between pending/, claimed/<host>/ and done/ by atomic renames, so two hosts never claim one.
    A population job's trials reach it through its own inbox (rlhp.inbox), layered on this one:
    this queue says which host runs a job; the inbox says which trials a running job trains."""

    def __init__(self, root: Path):
        self.root = root
        for sub in ("pending", "claimed", "done"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def put(self, number: int, spec: dict) -> None:
        (self.root / "closed").unlink(missing_ok=True)
        (self.root / "done" / f"{number}.pkl").unlink(missing_ok=True)
        _dump(spec, self.root / "pending" / f"{number}.pkl")

    def claim(self, host: str) -> tuple[int, dict] | None:
        mine = self.root / "claimed" / host
        mine.mkdir(exist_ok=True)
        for path in sorted((self.root / "pending").glob("*.pkl"), key=lambda p: int(p.stem)):
            try:
                os.rename(path, mine / path.name)
            except FileNotFoundError:  # another host was faster
                continue
            return int(path.stem), _load(mine / path.name)
        return None

    def release(self, host: str, number: int, spec: dict) -> None:
        """Put a claimed trial back in the queue (its host was preempted)."""
        _dump(spec, self.root / "pending" / f"{number}.pkl")
        (self.root / "claimed" / host / f"{number}.pkl").unlink(missing_ok=True)

    def finish(self, host: str, number: int, result: Any) -> None:
        _dump(result, self.root / "done" / f"{number}.pkl")
        (self.root / "claimed" / host / f"{number}.pkl").unlink(missing_ok=True)

    def result(self, number: int) -> tuple[bool, Any]:
        path = self.root / "done" / f"{number}.pkl"
        return (True, _load(path)) if path.exists() else (False, None)

    def claims(self, host: str) -> list[int]:
        return [int(p.stem) for p in (self.root / "claimed" / host).glob("*.pkl")]

    def close(self) -> None:
        """No more jobs will come: idle hosts end (put reopens it)."""
        (self.root / "closed").touch()

    def closed(self) -> bool:
        return (self.root / "closed").exists()

    def pending(self) -> int:
        return sum(1 for _ in (self.root / "pending").glob("*.pkl"))


def _preempted(ret: JobReturn) -> bool:
    """Whether a trial's job failed because the trial checkpointed on a signal."""
    from rlhp.errors import Preempted

    try:  # JobReturn's public way to a failure: return_value raises it (after a stderr line)
        with contextlib.redirect_stderr(io.StringIO()):
            ret.return_value  # noqa: B018
    except Exception as e:
        return isinstance(e, Preempted)
    return False


def _run_trial(payload: Path) -> None:
    """One trial in its own process: the submitit launcher's own job body; result to the queue.
    A trial that checkpointed on a signal exits PREEMPTED (SIGUSR2) or TERMINATED (SIGTERM)."""
    spec = _load(payload)  # cloudpickled: the task function may live in __main__
    launcher = spec["launcher"]  # a trial's, or a population job's
    queue, host, number = Queue(Path(spec["queue"])), spec["host"], spec["number"]
    received: list[int] = []

    def on_signal(signum, _frame):  # the trial's handler hands the signal on after its checkpoint
        received.append(signum)
        if signal.getsignal(signum) is on_signal:  # before the trial listens: nothing to save
            os._exit(TERMINATED if signum == signal.SIGTERM else PREEMPTED)

    for sig in (signal.SIGUSR2, signal.SIGTERM):
        signal.signal(sig, on_signal)
    ret = launcher(spec["overrides"], "hydra.sweep.dir", number, f"{host}_{number}", spec["state"])
    if _preempted(ret) or received and ret.status is not JobStatus.COMPLETED:
        # signalled: whatever it raised, the job's end state decides (Packer._lost)
        os._exit(TERMINATED if signal.SIGTERM in received else PREEMPTED)
    queue.finish(host, number, ret)


def _start(spec: dict, cpus: int) -> subprocess.Popen:
    """A trial process; inside a SLURM job, a job step of its own, so sacct lists each trial."""
    payload = Path(spec["queue"]) / "claimed" / spec["host"] / f"{spec['number']}.payload"
    _dump(spec, payload)
    cmd = [sys.executable, "-m", "rlhp.sweep._slurm", str(payload)]
    if "SLURM_JOB_ID" in os.environ:
        step = ["srun", "--overlap", "--ntasks=1", "--nodes=1", f"--cpus-per-task={cpus}"]
        cmd = [*step, f"--job-name=rlhp_trial{spec['number']}", *cmd]
    return subprocess.Popen(cmd)


def outcome(rc: int, stopping: bool, done: bool) -> str:
    """What a host does with a trial whose process ended with exit code `rc`: 'done' (its result
    is in); 'release' (checkpointed on SIGUSR2, a time limit: queued for the next host); 'hold'
    (checkpointed on SIGTERM, killed by SIGTERM before it could checkpoint, SIGKILLed as srun does
    to a signalled step, or killed with its host: the sweeper decides by the host job's end
    state, Packer._lost); 'fail'."""
    if done:
        return "done"
    if rc == PREEMPTED:
        return "release"
    return "hold" if rc == TERMINATED or rc in SIGNALLED or stopping else "fail"


def serve(queue_root: str, host: str, per_gpu: int, cpus: int, idle_s: float) -> str:
    """A host job: run up to per_gpu queued trials at once until the queue is closed or idle.
    It runs in the job's batch step (no srun): SLURM signals (preemption, time limit, Ctrl+C's
    `scancel --signal`) reach the trial steps only, whose srun would turn a SIGTERM into a
    SIGKILL of its step; a trial that checkpointed on one tells the host by its exit code."""
    queue = Queue(Path(queue_root))
    running: dict[int, tuple[subprocess.Popen, dict]] = {}
    stop = threading.Event()

    def on_signal(signum, _frame):  # scancel (all steps), or no SLURM: to the trials
        stop.set()
        if "SLURM_JOB_ID" not in os.environ:
            for proc, _ in running.values():
                proc.send_signal(signum)

    for sig in (signal.SIGUSR2, signal.SIGTERM):
        signal.signal(sig, on_signal)
    for number in queue.claims(host):  # a requeued host first gives back what it held
        queue.release(host, number, _load(queue.root / "claimed" / host / f"{number}.pkl"))
    idle_since = time.time()
    while True:
        while not stop.is_set() and len(running) < per_gpu and (got := queue.claim(host)):
            number, spec = got
            spec.update(host=host, number=number, queue=queue_root)
            running[number] = (_start(spec, cpus), spec)
        for number, (proc, spec) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[number]
            _ended(queue, host, number, spec, proc.returncode, stop)
        if running:
            idle_since = time.time()
        elif stop.is_set() or queue.closed() or time.time() - idle_since > idle_s:
            return "preempted" if stop.is_set() else "idle"
        time.sleep(0.2)


def _ended(queue: Queue, host: str, number: int, spec: dict, rc: int, stop) -> None:
    """A host's trial process ended with exit code `rc`: act on its outcome."""
    what = outcome(rc, stop.is_set(), queue.result(number)[0])
    if what == "fail":
        queue.finish(host, number, RuntimeError(f"trial process exit {rc}"))
    elif what != "done":
        stop.set()  # the job was signalled: claim nothing more
        spec["preemptions"] = spec.get("preemptions", 0) + 1
        if spec["preemptions"] > spec["max_num_timeout"]:
            queue.finish(host, number, RuntimeError("preempted too many times"))
        elif what == "release":
            queue.release(host, number, spec)
        else:  # by the host job's end state (Packer._lost)
            # ended on SIGTERM (checkpointed, or killed before it could): preempted unless CANCELLED
            spec["sigterm"] = rc == TERMINATED or rc in SIGTERMED
            _dump(spec, queue.root / "claimed" / host / f"{number}.pkl")


class Jobs:
    """SLURM jobs, one submitit job each, kept so that stop() (Ctrl+C) reaches them, submitted
    again when SLURM refused them (Backoff) or preempted them (see call): a search's trial and
    population jobs (run: as Hydra's submitit launcher submits them, named `<prefix>_<N>`,
    `<prefix>_pop<N>`) and validation runs (call)."""

    def __init__(self, params, prefix: str = "rlhp", folder: Path | None = None):
        self.prefix = prefix
        self.max_preemptions = params.get("max_num_timeout") or 0
        self.executor = executor(params, folder or Path(params["submitit_folder"]))
        self.running: dict[str, Any] = {}  # job id -> submitit job
        self.ids: dict[str, str] = {}  # job name -> the id of its latest job
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def run(self, number: int, overrides: list[str], launcher) -> JobReturn:
        """Job `number`'s JobReturn (`launcher`: the Hydra launcher whose task it runs), see
        call; a JobReturn whose trial checkpointed on a signal is a job without a result."""
        from hydra.core.singleton import Singleton

        log.info("\t#%d : %s", number, " ".join(filter_overrides(overrides)))
        name = f"{self.prefix}_{number}" if number < JOB_BASE else f"{self.prefix}_pop"
        name += str(number - JOB_BASE) if number >= JOB_BASE else ""
        args = (list(overrides), "hydra.sweep.dir", number, f"job_id_for_{number}")
        return self.call(name, f"#{number}", _preempted, launcher, *args, Singleton.get_state())

    def call(self, name: str, what: str, checkpointed, fn, *args):
        """fn(*args) run as the SLURM job `name` (`what` in messages): its result. A job that
        ended without one, or whose result says checkpointed(result) (it stopped at a checkpoint
        on a signal), is submitted again when SLURM recorded it as preempted
        (rlhp.slurm.preempted), max_num_timeout times at most; else UncompletedJobError (also
        when it was cancelled after it checkpointed). KeyboardInterrupt after stop(),
        NotSubmitted when SLURM refuses it for good."""
        preemptions = 0
        while True:
            job = self._submit(name, fn, args)
            try:
                ret, error = self._wait(job), None
            except UncompletedJobError as e:
                ret, error = None, e
            if ret is not None and not checkpointed(ret):
                return ret
            if self.stopping.is_set():  # Ctrl+C: it checkpointed, resumed next time
                raise KeyboardInterrupt
            (state, killed), preemptions = end_state(job.job_id), preemptions + 1
            # ret: it checkpointed; killed: SIGTERM came before it could
            if (
                not preempted(ret is not None or killed, state)
                or preemptions > self.max_preemptions
            ):
                ended = f"job {job.job_id} ended ({state or 'state unknown'})"  # retriable?
                why = f": {one_line(error)}" if error else " after its trial checkpointed"
                raise UncompletedJobError(ended + why)
            scancel(job.job_id)  # in case SLURM requeued it: the new job resumes the run
            log.warning("job %s of %s was preempted: submitted again", job.job_id, what)

    def _submit(self, name: str, fn, args: tuple):
        backoff = Backoff(f"job {name}")
        while True:
            if self.stopping.is_set():
                raise KeyboardInterrupt
            if backoff.ready():
                with self.lock:  # the name is the executor's: set and submitted together
                    self.executor.update_parameters(name=name)
                    try:
                        job = submit(self.executor, fn, *args)
                    except FailedJobError as e:
                        backoff.refused(e)
                        continue
                    self.running[job.job_id], self.ids[name] = job, job.job_id
                backoff.submitted(job.job_id)
                return job
            time.sleep(1)

    def _wait(self, job) -> JobReturn:
        """The job's JobReturn once it ended (UncompletedJobError without one)."""
        try:
            if self.stopping.is_set():  # stop() came while this job was being submitted
                stop_jobs({job.job_id})
            while not job.done():
                if self.stopping.is_set():
                    raise KeyboardInterrupt
                time.sleep(1)
            return job.result()
        finally:
            with self.lock:
                del self.running[job.job_id]

    def stop(self) -> None:
        """Every running job's trials checkpoint and end, none requeued (stop_jobs)."""
        with self.lock:
            self.stopping.set()
            job_ids = set(self.running)
        stop_jobs(job_ids)


class Packer:
    """Runs trials on host jobs of `per_gpu` trials each (see the module docstring)."""

    def __init__(
        self, params, sweep_dir: Path, prefix: str, per_gpu: int, requeue: bool, idle_s=20.0
    ):
        self.per_gpu, self.requeue, self.idle_s = per_gpu, requeue, idle_s
        self.queue = Queue(sweep_dir / ".queue")
        params = dict(params)
        self.max_num_timeout = params.get("max_num_timeout", 3)
        params.update(gpu_request(params.get("gres"), 1))
        params["use_srun"] = False  # serve runs in the batch step (see serve)
        params["cpus_per_task"] = (params.get("cpus_per_task") or 1) * per_gpu
        if params.get("mem_gb"):
            params["mem_gb"] = params["mem_gb"] * per_gpu
        params["name"] = f"{prefix}_host"
        self.cpus = params["cpus_per_task"] // per_gpu
        self.backoff = Backoff("a host job")
        self.executor = executor(params, sweep_dir / ".submitit" / "%j")
        self.hosts: dict[str, Any] = {}  # host name -> submitit job
        self.outstanding: set[int] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self, number: int, overrides: list[str], launcher):
        """Queue the job (a trial's, or a population job's: `launcher` runs its task), make sure
        a host will take it, wait for its JobReturn."""
        from hydra.core.singleton import Singleton

        spec = {
            "launcher": launcher,
            "overrides": list(overrides),
            "state": Singleton.get_state(),
            "max_num_timeout": self.max_num_timeout,
            "requeue": self.requeue,
        }
        self.queue.put(number, spec)
        with self.lock:
            self.outstanding.add(number)
        try:
            while True:
                done, result = self.queue.result(number)
                if done:
                    if isinstance(result, Exception):
                        raise result
                    return result
                if self.stopping.is_set():
                    raise KeyboardInterrupt
                self._tend()
                time.sleep(1.0)
        finally:
            with self.lock:
                self.outstanding.discard(number)

    def _tend(self) -> None:
        """Start hosts for outstanding trials; handle trials whose host ended without a result."""
        with self.lock:
            for name, job in list(self.hosts.items()):
                if job.done():
                    del self.hosts[name]
                    self._lost(name, job.job_id)
            needed = math.ceil(len(self.outstanding) / self.per_gpu)
            while len(self.hosts) < needed and self.queue.pending() and not self.stopping.is_set():
                if not self.backoff.ready():
                    return
                name = f"h{len(os.listdir(self.queue.root / 'claimed'))}_{int(time.time())}"
                (self.queue.root / "claimed" / name).mkdir()
                args = (str(self.queue.root), name, self.per_gpu, self.cpus)
                try:
                    self.hosts[name] = submit(self.executor, serve, *args, self.idle_s)
                except FailedJobError as e:
                    self.backoff.refused(e)
                    return
                self.backoff.submitted(self.hosts[name].job_id)
                log.info("host job %s started as %s", self.hosts[name].job_id, name)

    def _lost(self, name: str, job_id: str) -> None:
        """The trials a host job held when it ended: queued again when SLURM recorded it as
        preempted (rlhp.slurm.preempted) or with requeue=true, failed otherwise."""
        state = None
        for lost in self.queue.claims(name):
            try:
                spec = _load(self.queue.root / "claimed" / name / f"{lost}.pkl")
            except FileNotFoundError:  # its host, requeued by SLURM, gave it back already
                continue
            state = end_state(job_id)[0] if state is None else state
            if self.requeue or preempted(spec.pop("sigterm", False), state):
                log.warning("host %s ended (%s): trial %d queued again", name, state, lost)
                self.queue.release(name, lost, spec)
            else:
                error = RuntimeError(f"host job {job_id} ended ({state or 'unknown'}) mid-trial")
                self.queue.finish(name, lost, error)

    def close(self) -> None:
        """The search is over: idle hosts end now instead of after idle_s."""
        self.queue.close()

    def stop(self) -> None:
        """Ctrl+C: every host's trials checkpoint and end, no host is requeued (stop_jobs); the
        trials stay RUNNING and are queued again when the same command runs."""
        with self.lock:
            self.stopping.set()
            job_ids = {job.job_id for job in self.hosts.values()}
        stop_jobs(job_ids)


SLOTS = 8  # trials at once on SLURM unless hydra.sweeper.max_concurrent says
HYDRA_ARRAY_PARALLELISM = 256  # Hydra's default for hydra.launcher.array_parallelism: not set


def slots(max_concurrent: int | None, parallelism: int | None, n_trials: int) -> tuple[int, str]:
    """Trials at once on SLURM, and a warning line ('' for none): max_concurrent, capped by
    hydra.launcher.array_parallelism when that is set; else array_parallelism; else SLOTS
    (not n_trials: submit limits, and TPE learns nothing from trials asked before any ended)."""
    given = parallelism if parallelism != HYDRA_ARRAY_PARALLELISM else None
    if max_concurrent and given and given < max_concurrent:
        return given, (
            f"hydra.launcher.array_parallelism={given} caps hydra.sweeper.max_concurrent="
            f"{max_concurrent}: {given} trials at once"
        )
    if max_concurrent or given:
        return max_concurrent or given, ""
    if n_trials <= SLOTS:
        return n_trials, ""
    return SLOTS, (
        f"{SLOTS} trials at once on SLURM, the default (set hydra.sweeper.max_concurrent=N): "
        "more submit more jobs, and TPE learns less from each trial"
    )


def check(
    partition: str | None, resources: dict[str, Any] | None = None, gpu_type: str | None = None
) -> None:
    """ConfigError, before anything is submitted, if SLURM or the partition cannot be reached,
    if no node of the partition can hold one job of ``resources`` (meta.search_resources), or
    has GPUs of ``gpu_type``."""
    fmt = "%P|%G|%m|%c"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", fmt], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise ConfigError("SLURM is not available here: no `sinfo` on PATH") from None
    except subprocess.TimeoutExpired:
        raise ConfigError("SLURM did not answer `sinfo` within 30 s") from None
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or ["no message"]
        raise ConfigError(f"SLURM is not reachable: {lines[-1]}")
    nodes = parse_sinfo(out.stdout)
    partitions = {p for p, *_ in nodes}
    if partition and partition not in partitions:
        raise ConfigError(f"unknown SLURM partition {partition!r}; known: {sorted(partitions)}")
    if resources is not None:
        where = [n[1:] for n in nodes if partition is None or n[0] == partition]
        if problem := unmet(resources, where):
            raise ConfigError(f"partition {partition or '(default)'}: {problem}")
    if gpu_type and gpu_type not in (types := gpu_types(out.stdout, partition)):
        raise ConfigError(
            f"partition {partition or '(default)'}: no node has GPUs of type {gpu_type} "
            f"(hydra.launcher.gres); its GPU types: {', '.join(sorted(types)) or 'none'}"
        )


def gpu_types(text: str, partition: str | None) -> set[str]:
    """The GPU types (gpu:TYPE:N) of the partition's nodes in ``sinfo -h -o '%P|%G|%m|%c'``."""
    types = set()
    for line in text.splitlines():
        part, gres = (line.split("|") + [""])[:2]
        if partition is None or part.rstrip("*") == partition:
            fields = (item.split("(")[0].split(":") for item in gres.split(","))
            types |= {f[1] for f in fields if f[0] == "gpu" and len(f) == 3}
    return types


def parse_sinfo(text: str) -> list[tuple[str, int, int, int]]:
    """(partition, GPUs, memory MB, CPUs) per node group of ``sinfo -h -o '%P|%G|%m|%c'``."""
    nodes = []
    for line in text.splitlines():
        if line.count("|") != 3:
            continue
        part, gres, mem, cpus = line.split("|")
        gpus = 0
        for item in gres.split(","):  # gpu:a100:4(S:0-1), gpu:2, shard:8, (null)
            fields = item.split("(")[0].split(":")
            if fields[0] == "gpu" and fields[-1].isdigit():
                gpus += int(fields[-1])
        digits = "".join(ch for ch in mem if ch.isdigit())
        nodes.append((part.rstrip("*"), gpus, int(digits or 0), int(cpus.rstrip("+") or 0)))
    return nodes


def job_request(resources: dict[str, Any]) -> tuple[int, float, int, int]:
    """(GPUs, memory GB, CPUs, trials) of one job: a trial's own, or a host job's for gpu < 1."""
    gpu, mem, cpu = (
        resources.get("gpu") or 0,
        resources.get("mem_gb") or 0,
        resources.get("cpu") or 1,
    )
    if 0 < gpu < 1:
        per_gpu = round(1 / gpu)
        return 1, mem * per_gpu, cpu * per_gpu, per_gpu
    return math.ceil(gpu), mem, cpu, 1


def unmet(resources: dict[str, Any], nodes: list[tuple[int, int, int]]) -> str | None:
    """What no node of ``nodes`` (GPUs, memory MB, CPUs) can give one job, with what to change."""
    gpus, mem_gb, cpus, trials = job_request(resources)
    what = f"a host job of {trials} trials" if trials > 1 else "a trial job"
    if not nodes:
        return "sinfo lists no node"
    if gpus and not any(g >= gpus for g, _, _ in nodes):
        most = max(g for g, _, _ in nodes)
        if most == 0:
            return (
                f"no node has a GPU (no gpu gres in sinfo) but {what} asks for {gpus}: "
                "choose a GPU partition (hydra.launcher.partition=...) or set "
                "meta.search_resources.gpu=0"
            )
        return (
            f"{what} asks for {gpus} GPUs, the most on one node is {most}: "
            f"set meta.search_resources.gpu={most} or less"
        )
    fits = [(m, c) for g, m, c in nodes if g >= gpus]
    top_mem = max(m for m, _ in fits) / 1024
    if mem_gb > top_mem:
        fix = f"meta.search_resources.mem_gb={math.floor(top_mem / trials * 10) / 10:g}"
        if trials > 1:
            fix += " or fewer trials per GPU (a larger meta.search_resources.gpu)"
        return f"{what} asks for {mem_gb:g} GB, the largest node has {top_mem:.1f} GB: set {fix}"
    top_cpu = max(c for _, c in fits)
    if cpus > top_cpu:
        fix = f"meta.search_resources.cpu={max(top_cpu // trials, 1)}"
        return f"{what} asks for {cpus} CPUs, the largest node has {top_cpu}: set {fix}"
    return None


if __name__ == "__main__":
    _run_trial(Path(sys.argv[1]))
