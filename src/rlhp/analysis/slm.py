"""SLM-Lab's names for rlhp's keys, and the experiment table where SLM-Lab writes it
(`info/<name>_experiment_df.csv`), so a seed user's pandas lines read a search unchanged."""

from pathlib import Path

import pandas as pd

from rlhp.analysis.table import write_csv
from rlhp.record import Sweep

# SLM-Lab path under the agent (or the spec root for env/meta) -> rlhp key
FIELDS = {
    "algorithm.gamma": "algo.gamma",
    "algorithm.lam": "algo.lam",
    "algorithm.clip_eps_spec.start_val": "algo.clip_eps",
    "algorithm.entropy_coef_spec.start_val": "algo.entropy_coef",
    "algorithm.val_loss_coef": "algo.val_loss_coef",
    "algorithm.time_horizon": "algo.time_horizon",
    "algorithm.minibatch_size": "algo.minibatch_size",
    "algorithm.training_epoch": "algo.training_epoch",
    "algorithm.training_iter": "algo.training_iter",
    "algorithm.training_frequency": "algo.training_frequency",
    "algorithm.training_start_step": "algo.learning_starts",
    "algorithm.explore_var_spec.start_val": "algo.explore_var_spec.start",
    "algorithm.explore_var_spec.end_val": "algo.explore_var_spec.end",
    "algorithm.explore_var_spec.end_step": "algo.explore_var_spec.end_step",
    "algorithm.normalize_advantage": "algo.normalize_advantage",
    "memory.batch_size": "algo.batch_size",
    "memory.max_size": "algo.memory_size",
    "memory.alpha": "algo.alpha_per",
    "memory.beta": "algo.beta",
    "net.hid_layers": "algo.hid_layers",
    "net.fc_hid_layers": "algo.hid_layers",  # ConvNet: the Nature CNN's dense layers
    "net.hid_layers_activation": "algo.hid_layers_activation",
    "net.clip_grad_val": "algo.clip_grad_val",
    "net.shared": "algo.shared",
    "net.optim_spec.lr": "algo.lr",
    "net.actor_optim_spec.lr": "algo.lr",
    "net.critic_optim_spec.lr": "algo.lr",  # rlhp has one lr: carried over when it is the same
    "net.update_frequency": "algo.target_update_frequency",
    "net.polyak_coef": "algo.tau",
    "env.num_envs": "env.num_envs",
    "env.max_frame": "env.max_frame",
    "meta.max_session": "max_session",
    "meta.log_frequency": "log_frequency",
}
ACTOR_CRITIC = ("ppo", "a2c", "sac")  # SLM-Lab names their lr actor_optim_spec.lr


def slm_name(key: str, algo: str) -> str | None:
    """SLM-Lab's dotted name of an rlhp key (`algo.lam` -> `agent.algorithm.lam`), or None."""
    if key == "algo.lr":
        return f"agent.net.{'actor_' if algo in ACTOR_CRITIC else ''}optim_spec.lr"
    path = next((p for p, k in FIELDS.items() if k == key and p != "net.fc_hid_layers"), None)
    if path is None:
        return None
    return path if path.startswith(("env.", "meta.")) else f"agent.{path}"


def write_slm_table(sweep: Sweep, df: pd.DataFrame) -> Path:
    """info/<sweep dir name>_experiment_df.csv: the experiment table with each searched key
    also under SLM-Lab's name, beside rlhp's (the rows best first, as SLM-Lab sorts them)."""
    algo = str(sweep.hydra.runtime.choices.get("algo", "")) if sweep.hydra else ""
    out = df.copy()
    for column, key in enumerate(list(sweep.space)):
        if (name := slm_name(key, algo)) is not None and name not in out:
            out.insert(column, name, df[key])
    path = sweep.dir / "info" / f"{sweep.dir.name}_experiment_df.csv"
    path.parent.mkdir(exist_ok=True)
    write_csv(out, path)
    return path
