"""Paths of a sweep dir, the trial id, and the atomic write."""

import pytest

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
