"""A real Optuna journal torn at random offsets opens with every complete record and takes more."""

import errno
import json
import random

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from rlhp.record import _storage

SPACE = {"x": FloatDistribution(0, 1)}


def journal(tmp_path, n: int = 6) -> bytes:
    """The bytes of a real journal of n finished trials in tmp_path/study.journal."""
    storage = _storage.open_storage(None, tmp_path)
    study = optuna.create_study(study_name="rlhp", storage=storage)
    for i in range(n):
        trial = study.ask(SPACE)
        trial.set_user_attr("i", i)
        study.tell(trial, float(i))
    return (tmp_path / "study.journal").read_bytes()


def complete_records(data: bytes) -> int:
    return data.count(b"\n")


@pytest.mark.parametrize("seed", range(20))
def test_a_journal_torn_at_a_random_offset_resumes(tmp_path, seed):
    data = journal(tmp_path)
    cut = random.Random(seed).randrange(len(data.split(b"\n", 1)[0]) + 2, len(data))
    if data[cut - 1 : cut] == b"\n":
        cut -= 1  # tear inside a record
    path = tmp_path / "study.journal"
    path.write_bytes(data[:cut])
    kept = complete_records(data[:cut])

    study = optuna.load_study(study_name="rlhp", storage=_storage.open_storage(None, tmp_path))
    assert path.read_bytes() == data[: data.rindex(b"\n", 0, cut) + 1]  # every complete record
    assert (tmp_path / "study.journal.torn").read_bytes() == data[
        len(path.read_bytes()) : cut
    ] + b"\n"
    trials = study.get_trials()
    trial = study.ask(SPACE)  # appending works, and a fresh open reads everything
    study.tell(trial, 99.0)
    again = optuna.load_study(study_name="rlhp", storage=_storage.open_storage(None, tmp_path))
    assert len(again.get_trials()) == len(trials) + 1
    assert again.get_trials()[-1].value == 99.0
    assert complete_records(path.read_bytes()) > kept
    for line in path.read_bytes().splitlines():
        json.loads(line)


def test_a_torn_tail_left_by_another_writer_is_set_aside_before_appending(tmp_path):
    journal(tmp_path, 2)
    study = optuna.load_study(study_name="rlhp", storage=_storage.open_storage(None, tmp_path))
    with open(tmp_path / "study.journal", "ab") as f:
        f.write(b'{"op_code":6,"worker_id":"gone","tri')  # a writer killed mid-record
    trial = study.ask(SPACE)
    study.tell(trial, 5.0)
    again = optuna.load_study(study_name="rlhp", storage=_storage.open_storage(None, tmp_path))
    assert [t.state for t in again.get_trials()] == [TrialState.COMPLETE] * 3
    assert (
        (tmp_path / "study.journal.torn")
        .read_bytes()
        .startswith(b'{"op_code":6,"worker_id":"gone"')
    )


def test_a_record_appended_onto_a_torn_line_is_recovered(tmp_path):
    """What Optuna itself left: the next record written on the torn line."""
    data = journal(tmp_path, 3)
    lines = data.splitlines(keepends=True)
    merged = b"".join(lines[:-2]) + lines[-2][:25] + lines[-1]
    (tmp_path / "study.journal").write_bytes(merged)
    study = optuna.load_study(study_name="rlhp", storage=_storage.open_storage(None, tmp_path))
    trials = study.get_trials()
    assert len(trials) == 3 and trials[-1].state == TrialState.COMPLETE  # its last record is back
    assert (tmp_path / "study.journal.torn").read_bytes() == lines[-2][:25] + b"\n"


def test_disk_errors_are_told_apart(tmp_path):
    assert _storage.disk_errno(OSError(errno.ENOSPC, "full")) == errno.ENOSPC
    assert _storage.disk_errno(OSError(errno.EROFS, "ro")) == errno.EROFS
    assert _storage.disk_errno(OSError(errno.ENOENT, "missing")) is None
    assert _storage.disk_errno(RuntimeError("loss is nan"), tmp_path) is None
    wrapped = RuntimeError("OSError: [Errno 28] No space left on device: 'metrics.csv'")
    assert _storage.disk_errno(wrapped, tmp_path) == errno.ENOSPC


def test_any_path_is_a_journal_and_a_url_a_database(tmp_path):
    from rlhp.record._storage import journal_path

    assert journal_path(None, tmp_path) == tmp_path / "study.journal"
    assert journal_path(str(tmp_path / "optuna.log"), tmp_path) == tmp_path / "optuna.log"
    assert journal_path("sqlite:///x.db", tmp_path) is None
    assert journal_path("postgresql://u@h/db", tmp_path) is None
