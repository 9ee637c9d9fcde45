"""Entry point: `python -m rlhp.train` trains one configuration; with `-m` it runs a search.

The Hydra task function returns the objective (a float), so any Hydra sweeper can optimise it;
the run directory also gets `result.yaml` with the per-session figures the rlhp sweeper records.
"""

import logging
import os
import signal
import socket
import sys
from pathlib import Path

import hydra
import numpy as np
import torch
from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rlhp import algo as algos
from rlhp.config import check
from rlhp.errors import ConfigError
from rlhp.log import flatten, log_hparams, write_atomic
from rlhp.loop import Preempted, Reporter, Session
from rlhp.population import Lockstep, Member, Population

log = logging.getLogger("rlhp")

# conf/ sits beside the package in a wheel and at the repository root in a source checkout.
_HERE = Path(__file__).resolve().parent
CONF_DIR = str(_HERE / "conf" if (_HERE / "conf").is_dir() else _HERE.parents[1] / "conf")


def device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def reporter(cfg: DictConfig) -> Reporter | None:
    """The ASHA coordinator's report for this trial, when a search scheduler is configured."""
    scheduler = cfg.get("meta", {}).get("search_scheduler")
    hydra_cfg = HydraConfig.get()
    if not scheduler or hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    from rlhp.asha import Coordinator, scheduler_settings

    settings = scheduler_settings(OmegaConf.to_container(scheduler), cfg.env.max_frame)
    coordinator = Coordinator(Path(hydra_cfg.sweep.dir) / "asha", **settings)
    trial = hydra_cfg.job.num
    return lambda frame, value: coordinator.report(trial, frame, value)


class StopOnSignal:
    """SIGTERM / SIGUSR2 (SLURM preemption, time limit) make the running session checkpoint at
    its next boundary and raise Preempted; the handler that was there before (submitit's, which
    requeues the job) then runs, so the trial resumes from that checkpoint."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.previous = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        self.session: Session | Population | None = None
        self.received: int | None = None
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        self.received = signum
        if self.session is not None:
            self.session.stop_requested = True

    def hand_over(self) -> None:
        """After the checkpoint: let the previous handler (e.g. submitit's requeue) act."""
        handler = self.previous[self.received]
        if callable(handler):
            handler(self.received, None)


def train_sessions(cfg: DictConfig, run_dir: Path, dev: torch.device, stop) -> list[dict]:
    """The sessions one after another (algorithms without stacked agents: DQN, SAC, REINFORCE);
    ASHA decides on the first, later seeds only run for trials it lets through."""
    summaries = []
    for s in range(cfg.max_session):
        stop.session = session = Session(cfg, run_dir, s, dev)
        session.stop_requested = stop.received is not None
        summary = session.run(reporter(cfg) if s == 0 else None)
        summaries.append(summary)
        log.info("session %d: %s", s, summary)
        if summary["stopped_at"] is not None:
            break
    return summaries


def train_population(cfg: DictConfig, run_dir: Path, dev: torch.device, stop) -> list[dict]:
    """The max_session sessions as one population, in lockstep (PPO, A2C). ASHA judges the
    mean over the sessions at each log point and stops them together."""
    members = [Member(cfg, run_dir, s) for s in range(cfg.max_session)]
    if (report := reporter(cfg)) is not None:
        lockstep = Lockstep(report, cfg.max_session)
        for member in members:
            member.reporter, member.lockstep = lockstep.reporter(), lockstep
    stop.session = population = Population(members, dev)
    population.stop_requested = stop.received is not None
    population.run()
    for member in members:
        if member.error is not None:
            raise FloatingPointError(f"session {member.session}: {member.error}")
        log.info("session %d: %s", member.session, member.summary())
    return [m.summary() for m in members]


def train(cfg: DictConfig) -> float:
    """Run max_session sessions (seeds seed, seed+1, ...); return the mean objective."""
    check(cfg)
    torch.set_num_threads(cfg.torch_threads)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    log.info("rlhp: outputs in %s (tensorboard --logdir %s)", run_dir, run_dir / "tb")
    dev = device(cfg.device)
    # a trial run again (resumed sweep, requeued job) waits for a stale copy of itself to end
    with FileLock(run_dir / ".lock"):
        stop = StopOnSignal()
        run = train_population if cfg.algo.name in algos.POPULATION else train_sessions
        try:
            summaries = run(cfg, run_dir, dev, stop)
        except Preempted:
            stop.hand_over()
            raise
    scores = np.array([x[cfg.objective] for x in summaries])
    result = {
        "objective": float(scores.mean()),
        "std": float(scores.std()),
        "state": "stopped" if summaries[0]["stopped_at"] is not None else "complete",
        "stopped_at": summaries[0]["stopped_at"],
        "frame": int(sum(x["frame"] for x in summaries)),
        "final": float(np.mean([x["final"] for x in summaries])),
        "max": float(np.max([x["max"] for x in summaries])),
        # sessions of a population run side by side, the others one after another
        "wall_s": float(
            (max if cfg.algo.name in algos.POPULATION else sum)(x["wall_s"] for x in summaries)
        ),
        "sessions": summaries,
        "where": {  # which machine and GPU ran it
            "host": socket.gethostname(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_step_id": os.environ.get("SLURM_STEP_ID"),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        },
    }
    write_atomic(run_dir / "result.yaml", OmegaConf.to_yaml(OmegaConf.create(result)))
    hparams = {"env": cfg.env.name, **flatten(OmegaConf.to_container(cfg, resolve=True))}
    metrics = {"objective": result["objective"], "final_total_reward_ma": result["final"]}
    log_hparams(run_dir, hparams, {f"hparams/{k}": v for k, v in metrics.items()})
    log.info(
        "rlhp: objective %s = %.4f (std %.4f) in %s",
        cfg.objective,
        *scores.mean(keepdims=True),
        scores.std(),
        run_dir,
    )
    return result["objective"]


@hydra.main(config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        return train(cfg)
    except (ConfigError, Preempted, FloatingPointError) as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the trial as failed with this error
        if isinstance(e, Preempted):
            print(f"rlhp: stopped: {e}; the same command resumes", file=sys.stderr)
            sys.exit(1)
        print(f"rlhp: error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ConfigError) else 1)


def check_overrides(args: list[str]) -> None:
    """One error line (not Hydra's five) for a command-line override that does not parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    try:
        OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith(("See ", "Error when parsing index"))]
        print(f"rlhp: error: {': '.join(lines[:2])}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    check_overrides(sys.argv[1:])
    main()
