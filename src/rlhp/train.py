"""Entry point: `python -m rlhp.train` trains one configuration; with `-m` it runs a search.

The Hydra task function returns the objective (a float), so any Hydra sweeper can optimise it;
the run directory also gets `result.yaml` with the per-session figures the rlhp sweeper records.
The training modules (torch) are imported by the task, not by a search's controller, which
never trains.
"""

import logging
import sys
from pathlib import Path

import hydra
from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from rlhp import asha
from rlhp.config import check
from rlhp.errors import ConfigError, Preempted

log = logging.getLogger("rlhp")

# conf/ sits beside the package in a wheel and at the repository root in a source checkout.
_HERE = Path(__file__).resolve().parent
CONF_DIR = str(_HERE / "conf" if (_HERE / "conf").is_dir() else _HERE.parents[1] / "conf")


def train(cfg: DictConfig) -> float:
    """Run max_session sessions (seeds seed, seed+1, ...); return the mean objective."""
    import torch

    from rlhp.population import check_memory
    from rlhp.trial import StopOnSignal, device, train_trial, write_result

    check(cfg)
    torch.set_num_threads(cfg.torch_threads)
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    log.info("rlhp: outputs in %s (tensorboard --logdir %s)", run_dir, run_dir)
    dev = device(cfg.device)
    report = None
    if hydra_cfg.mode == RunMode.MULTIRUN:  # the sweeper checked the memory before launch
        report = asha.reporter(cfg, Path(hydra_cfg.sweep.dir), hydra_cfg.job.num)
    else:
        check_memory(cfg)
    # a trial run again (resumed sweep, requeued job) waits for a stale copy of itself to end
    with FileLock(run_dir / ".lock"):
        stop = StopOnSignal()
        try:
            summaries = train_trial(cfg, run_dir, dev, stop, report)
        except Preempted:
            stop.hand_over()
            raise
    return write_result(cfg, run_dir, summaries).objective


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
    """One error line (not Hydra's five) for a command-line override that does not parse; for a
    value with a character Hydra takes only in quotes (é, #, &, ...), how to quote it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    parser = OverridesParser.create()
    try:
        parser.parse_overrides(overrides)
    except OverrideParseException as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith(("See ", "Error when parsing index"))]
        hint = next(filter(None, (quoted(o, parser) for o in overrides)), None)
        print(f"rlhp: error: {hint or ': '.join(lines[:2])}", file=sys.stderr)
        sys.exit(2)


def quoted(override: str, parser) -> str | None:
    """How to write `key=value` when Hydra's lexer refuses a character of the value but takes
    it quoted (a path with é or #): the override quoted for Hydra and for the shell."""
    import shlex

    key, _, value = override.partition("=")
    try:
        parser.parse_override(override)
        return None
    except Exception as e:
        if "token recognition error" not in str(e):
            return None
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    fixed = f'{key}="{escaped}"'
    try:
        parser.parse_override(fixed)
    except Exception:
        return None
    return f"{override}: Hydra reads this value only in quotes; write it as {shlex.quote(fixed)}"


if __name__ == "__main__":
    import hydra_plugins.rlhp_sweeper.config  # noqa: F401  the `ordered(...)` grammar, for the check

    check_overrides(sys.argv[1:])
    main()
