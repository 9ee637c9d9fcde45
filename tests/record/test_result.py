"""result.yaml: written and read back by record.TrialResult, old names read under new ones."""

import math

import numpy as np
import pytest
import yaml

from rlhp.record import COMPLETE, FAILED, STOPPED, TrialResult, recorded


def summaries(finals: list[float], stopped_at: int | None = None) -> list[dict]:
    return [
        {
            "final": f,
            "auc": f / 2,
            "max": f + 10,
            "frame": 1000 + i,
            "wall_s": 2.0 + i,
            "stopped_at": stopped_at,
        }
        for i, f in enumerate(finals)
    ]


def test_figures_of_the_sessions():
    sessions = summaries([100.0, 150.0, 230.0])
    result = TrialResult.of_sessions(sessions, "auc")
    aucs = np.array([s["auc"] for s in sessions])
    assert result.state == COMPLETE and result.stopped_at is None
    assert result.objective == pytest.approx(aucs.mean())
    assert result.objective_std == pytest.approx(aucs.std())
    assert result.final == pytest.approx(np.mean([s["final"] for s in sessions]))
    assert result.max == max(s["max"] for s in sessions)
    assert result.frame == sum(s["frame"] for s in sessions)
    # a trial's sessions train side by side: the longest one is the trial's wall time
    assert result.wall_s == max(s["wall_s"] for s in sessions) < sum(s["wall_s"] for s in sessions)


def test_written_and_read_back(tmp_path):
    result = TrialResult.of_sessions(summaries([80.0, 90.0], stopped_at=5000), "final")
    result.write(tmp_path)
    assert TrialResult.exists(tmp_path)
    data = yaml.safe_load((tmp_path / "result.yaml").read_text())
    assert data["state"] == STOPPED and data["stopped_at"] == 5000
    assert data["objective_std"] == pytest.approx(5.0) and "std" not in data
    assert data["where"]["host"]
    again = TrialResult.read(tmp_path)
    assert again == result
    attrs = again.attrs()
    assert attrs["sessions"] == 2 and attrs["objective_std"] == pytest.approx(5.0)


def test_a_result_written_before_the_rename_reads_under_todays_names(tmp_path):
    old = {"objective": 1.5, "std": 0.25, "state": "complete", "stopped_at": None, "sessions": []}
    (tmp_path / "result.yaml").write_text(yaml.safe_dump(old))
    result = TrialResult.read(tmp_path)
    assert result.objective == 1.5 and result.objective_std == 0.25
    # a study's trial recorded with the old name
    assert recorded({"std": 0.25, "frame": 10}) == {"objective_std": 0.25, "frame": 10}


def test_a_failure_keeps_its_error_only(tmp_path):
    TrialResult.failure("session 1: loss is NaN").write(tmp_path)
    data = yaml.safe_load((tmp_path / "result.yaml").read_text())
    assert set(data) == {"state", "error", "where"}
    result = TrialResult.read(tmp_path)
    assert result.state == FAILED and result.error == "session 1: loss is NaN"
    assert math.isnan(result.objective)


def test_no_result_yet(tmp_path):
    assert not TrialResult.exists(tmp_path)
    with pytest.raises(OSError):
        TrialResult.read(tmp_path)
