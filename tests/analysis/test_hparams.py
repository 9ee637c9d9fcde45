"""The HParams experiment rlhp.analyze writes, read back through TensorBoard's own HParams
plugin: the most important searched parameters are the columns shown, a trial ASHA stopped
shows where, a validation re-run is no trial row. The sessions' files are written by the
trials' own writer (rlhp.log.log_hparams) for a made-up study."""

import optuna
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from rlhp.analysis import write_tensorboard
from rlhp.analysis.tensorboard import ranked
from rlhp.log import log_hparams
from rlhp.record import load, validation_dir

from .test_analyze import hparams_plugin

# seven searched parameters, named so that the alphabetical first five are not the important
SPACE = {f"algo.{name}": FloatDistribution(0.0, 1.0) for name in "abcdefg"}
IMPORTANT = ["algo.g", "algo.f", "algo.e", "algo.d", "algo.a"]  # importance.yaml's ranking
TRIALS = [  # state, objective, frames trained (stopped: where ASHA stopped it)
    (TrialState.COMPLETE, 100.0, 2048),
    (TrialState.PRUNED, 20.0, 512),
    (TrialState.COMPLETE, 150.0, 2048),
]


def summary(objective: float, frame: int) -> dict:
    return {"final": objective, "frame": frame}


def made_up_search(root):
    sweep = root / "sweep"
    sweep.mkdir()
    backend = optuna.storages.journal.JournalFileBackend(str(sweep / "study.journal"))
    storage = optuna.storages.JournalStorage(backend)
    study = optuna.create_study(study_name="rlhp", storage=storage, direction="maximize")
    for i, (state, value, frame) in enumerate(TRIALS):
        params = {name: (i + 1) / 10 + k / 100 for k, name in enumerate(SPACE)}
        study.add_trial(
            create_trial(
                state=state,
                value=value if state == TrialState.COMPLETE else None,
                params=params,
                distributions=SPACE,
                user_attrs={"stopped_at": frame} if state == TrialState.PRUNED else {},
                intermediate_values={frame: value},
            )
        )
        hparams = {**params, "seed": 0, "env.max_frame": 2048}
        log_hparams(sweep / str(i), hparams, [summary(value, frame)], "final")
    # trial 2 re-run by rlhp.validate with a fresh seed
    params = study.trials[2].params
    log_hparams(
        validation_dir(sweep, 2), {**params, "seed": 10_002}, [summary(140.0, 2048)], "final"
    )
    importance = [{"param": n, "importance": 1.0 - k / 10} for k, n in enumerate(IMPORTANT)]
    importance += [{"param": n, "importance": None} for n in SPACE if n not in IMPORTANT]
    (sweep / "importance.yaml").write_text(yaml.safe_dump({"importance": importance}))
    return sweep


def test_ranked_puts_the_scored_parameters_first_in_their_order():
    importance = [{"param": "b", "importance": 0.7}, {"param": "c", "importance": None}]
    assert ranked(["a", "b", "c"], importance) == ["b", "a", "c"]
    assert ranked(["a", "b"], []) == ["a", "b"]


def test_hparams_show_the_important_columns_where_asha_stopped_and_no_validation_row(tmp_path):
    sweep = made_up_search(tmp_path)
    write_tensorboard(load(sweep))
    call = hparams_plugin(sweep)
    exp = call("/experiment", {"experimentName": ""})
    names = [h["name"] for h in exp["hparamInfos"]]
    shown = [h["name"] for h in exp["hparamInfos"] if h.get("differs")]
    assert names[:5] == shown and sorted(shown) == sorted(IMPORTANT), names
    metrics = [m["name"]["tag"] for m in exp["metricInfos"]]
    assert metrics == ["hparams/objective", "hparams/final_total_reward_ma", "hparams/stopped_at"]

    cols = [{"hparam": n, "includeInResult": True} for n in names]
    cols += [{"metric": m["name"], "includeInResult": True} for m in exp["metricInfos"]]
    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
        "colParams": cols,
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = call("/session_groups", request)["sessionGroups"]
    assert sorted(g["name"] for g in groups) == ["0", "1", "2"]  # no "trial2" row
    stopped_at = {
        g["name"]: v["value"]
        for g in groups
        for v in g["metricValues"]
        if v["name"]["tag"] == "hparams/stopped_at"
    }
    assert stopped_at == {"1": 512.0}
    # the validation run keeps its scalars (the Scalars dashboard still shows it)
    [path] = validation_dir(sweep, 2).glob("session0/events.out.tfevents.*.hparams")
    tags = {v.tag for e in EventFileLoader(str(path)).Load() for v in e.summary.value}
    assert {"hparams/objective", "hparams/final_total_reward_ma"} <= tags
    # analysed again: the same experiment, one stopped_at file per stopped session
    write_tensorboard(load(sweep))
    assert len(list(sweep.glob("**/*.rlhp_stopped"))) == 1
    assert call("/session_groups", request)["sessionGroups"] == groups
