"""Paths of a sweep dir and a run's .hydra/, the trial id, and the atomic write."""

import pytest
import yaml
from omegaconf import OmegaConf, open_dict

from rlhp import record


def test_the_trial_id_is_the_folder_name(tmp_path):
    folder = record.trial_dir(tmp_path, 17)
    assert folder == tmp_path / "17" and record.trial_number(folder) == 17
    assert record.trial_number(record.population_dir(tmp_path, 3).parent) is None
    assert record.trial_number(record.validation_dir(tmp_path, 17)) is None


def test_write_atomic_replaces_whole_files(tmp_path):
    path = tmp_path / "state.yaml"
    record.write_atomic(path, "a: 1\n")
    record.write_atomic(path, b"a: 2\n")
    assert path.read_text() == "a: 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["state.yaml"]  # no temporary left


def test_a_writer_that_fails_leaves_the_old_file(tmp_path):
    path = tmp_path / "best.png"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), record.replacing(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("savefig failed")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["best.png"]


def test_write_run_writes_the_hydra_files_a_run_is_read_back_from(tmp_path):
    cfg = OmegaConf.create({"seed": 3, "algo": {"lr": 0.01, "lr_end": "${.lr}"}, "hydra": {}})
    with open_dict(cfg):
        hydra = cfg.pop("hydra")
    hydra.sweep = {"subdir": "${hydra.job.num}"}
    run_dir = record.trial_dir(tmp_path, 5)
    record.write_run(run_dir, cfg, ["algo.lr=0.01", "seed=3"], hydra)
    assert record.config_path(run_dir) == run_dir / ".hydra" / "config.yaml"
    assert yaml.safe_load(record.config_path(run_dir).read_text()) == {
        "seed": 3,
        "algo": {"lr": 0.01, "lr_end": 0.01},  # resolved, without a hydra node
    }
    assert yaml.safe_load(record.overrides_path(run_dir).read_text()) == ["algo.lr=0.01", "seed=3"]
    hydra_yaml = yaml.safe_load(record.hydra_path(run_dir).read_text())
    assert hydra_yaml == {"hydra": {"sweep": {"subdir": "${hydra.job.num}"}}}  # as Hydra's
