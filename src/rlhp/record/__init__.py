"""What a sweep directory holds, and the one place that reads and writes it (torch-free).

    SWEEP_DIR/
      study.journal          the Optuna study (unless hydra.sweeper.storage names another)
      sweep.yaml             its study (storage, name, id) and the settings of its first launch
      state.yaml             the sweeper's progress (counts, running trials, best, eta)
      asha/                  the ASHA coordinator's rungs and decisions (rlhp.asha)
      N/                     trial N: .hydra/ (its config, overrides, Hydra node: write_run),
                             metrics.csv, session<s>/ (TensorBoard), checkpoints, result.yaml
      populations/J/         population job J of a batched search (its inbox, its log)
      validation/trialN/     trial N's validation re-run; validation.csv beside
      experiment_df.csv ...  the analysis (rlhp.analyze)

The trial id N is one number: Optuna's trial number, Hydra's job number, ASHA's trial id and
the folder's name (`trial_dir`). The training side writes `result.yaml` (`TrialResult`); the
sweeper, validation and the analysis read it and the study (`open_storage`, `load`) in the
state vocabulary of `state` / `label`.
"""

from rlhp.record._layout import (
    ASHA,
    CONFIG,
    HYDRA,
    HYDRA_DIR,
    JOB_BASE,
    JOURNAL,
    METRICS,
    OVERRIDES,
    POPULATIONS,
    RESULT,
    STATE,
    SWEEP,
    VALIDATION_CSV,
    config_path,
    hydra_path,
    overrides_path,
    population_dir,
    replacing,
    trial_dir,
    trial_number,
    validation_dir,
    write_atomic,
    write_run,
)
from rlhp.record._result import TrialResult, recorded
from rlhp.record._states import (
    COMPLETE,
    FAILED,
    REJECTED,
    RUNNING,
    STATES,
    STOPPED,
    WAITING,
    label,
    score,
    state,
    stopped_at,
)
from rlhp.record._storage import disk_errno, journal_path, open_storage
from rlhp.record._sweep import AnalysisError, Sweep, decode, load, pinned, validation_table

__all__ = [
    "ASHA",
    "COMPLETE",
    "CONFIG",
    "FAILED",
    "HYDRA",
    "HYDRA_DIR",
    "JOB_BASE",
    "JOURNAL",
    "METRICS",
    "OVERRIDES",
    "POPULATIONS",
    "REJECTED",
    "RESULT",
    "RUNNING",
    "STATE",
    "STATES",
    "STOPPED",
    "SWEEP",
    "VALIDATION_CSV",
    "WAITING",
    "AnalysisError",
    "Sweep",
    "TrialResult",
    "config_path",
    "decode",
    "disk_errno",
    "hydra_path",
    "label",
    "load",
    "journal_path",
    "open_storage",
    "overrides_path",
    "pinned",
    "population_dir",
    "recorded",
    "replacing",
    "score",
    "state",
    "stopped_at",
    "trial_dir",
    "trial_number",
    "validation_dir",
    "validation_table",
    "write_atomic",
    "write_run",
]
