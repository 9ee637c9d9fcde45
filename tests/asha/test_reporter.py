"""rlhp.asha.reporter: a trial's reports from its config go to the coordinator of its sweep."""

import json

import pytest
from omegaconf import OmegaConf

from rlhp import asha


def config(scheduler):
    return OmegaConf.create({"env": {"max_frame": 9000}, "meta": {"search_scheduler": scheduler}})


def test_no_scheduler_no_reporter(tmp_path):
    assert asha.settings(config(None)) is None
    assert asha.reporter(config(None), tmp_path, 0) is None
    assert not (tmp_path / "asha").exists()


def test_settings_default_max_t_to_max_frame_and_are_checked():
    got = asha.settings(config({"grace_period": 1000, "reduction_factor": 3}))
    assert got["max_t"] == 9000
    with pytest.raises(ValueError, match="reduction_factor"):
        asha.settings(config({"grace_period": 1000, "reduction_factor": 1}))


def test_trials_report_to_the_coordinator_in_the_sweep_dir(tmp_path):
    cfg = config({"grace_period": 1000, "reduction_factor": 2})
    reports = [asha.reporter(cfg, tmp_path, trial) for trial in range(3)]
    values = (1.0, 2.0, 0.5)
    decisions = [report(1000, v) for report, v in zip(reports, values, strict=True)]
    # reduction factor 2: each value at rung 1000 must reach the median of those before it
    assert decisions == [True, values[1] >= values[0], values[2] >= (values[0] + values[1]) / 2]
    lines = (tmp_path / "asha" / "decisions.jsonl").read_text().splitlines()
    assert [json.loads(line)["trial"] for line in lines] == ["0", "1", "2"]
    pinned = json.loads((tmp_path / "asha" / "config.json").read_text())
    assert pinned["max_t"] == 9000 and pinned["grace_period"] == 1000
