"""The analysis of a search, read from its sweep dir alone (rlhp.record): the table
(`table`), parameter importance (`importance`), the best configurations as configs and commands
(`export`), the HParams summary (`tensorboard`), the graphs (`plots`) and the best-history
(`history`), SLM-Lab's names and table (`slm`). `python -m rlhp.analyze` runs them all."""

from rlhp.analysis.export import (
    TOP,
    app_args,
    config_text,
    override_command,
    plain,
    train_command,
    trial_overrides,
    write_configs,
)
from rlhp.analysis.history import Step, best_history
from rlhp.analysis.importance import EVALUATORS, importance, top_configurations
from rlhp.analysis.slm import write_slm_table
from rlhp.analysis.table import (
    GROUP,
    experiment_df,
    history_table,
    rank_by,
    write_csv,
    write_table,
)
from rlhp.analysis.tensorboard import write_tensorboard

__all__ = [
    "EVALUATORS",
    "GROUP",
    "TOP",
    "Step",
    "app_args",
    "best_history",
    "cli_args",
    "config_text",
    "experiment_df",
    "history_table",
    "importance",
    "override_command",
    "plain",
    "rank_by",
    "top_configurations",
    "train_command",
    "trial_overrides",
    "write_configs",
    "write_csv",
    "write_slm_table",
    "write_table",
    "write_tensorboard",
]


def cli_args(argv: list[str]) -> list[str]:
    """`key=value` arguments (Hydra style) as `--key=value`, for argparse."""
    return [f"--{a}" if "=" in a and not a.startswith("-") else a for a in argv]
