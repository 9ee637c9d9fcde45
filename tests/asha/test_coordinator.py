import json
import warnings

import pytest

from rlhp.asha import Coordinator, _coordinator

NAN = float("nan")


def make(path, **kwargs):
    # Rungs at frames 1, 3 and 9; a trial stops below the 66.7th percentile.
    settings = {"grace_period": 1, "reduction_factor": 3, "max_t": 27} | kwargs
    return Coordinator(path, **settings)


def lines(path):
    return (path / "rungs.jsonl").read_text().splitlines()


def test_first_trials_at_a_rung(tmp_path):
    asha = make(tmp_path / "asha")
    assert asha.report("a", 1, 5.0) is True  # empty rung
    assert asha.report("b", 1, 4.0) is False  # cutoff is a's 5.0
    assert asha.report("c", 1, 5.0) is True  # tie with the cutoff
    # Sorted 4, 5, 5: the 66.7th percentile sits at position 4/3, between the two 5s.
    assert asha.report("d", 1, 4.5) is False
    assert asha.rungs() == {(0, 1): {"a": 5.0, "b": 4.0, "c": 5.0, "d": 4.5}}
    assert asha.stopped_at("b") == 1
    assert asha.stopped_at("a") is None
    assert asha.stopped_at("never-seen") is None


def test_rungs_are_independent(tmp_path):
    asha = make(tmp_path)
    assert asha.report("a", 1, 100.0) is True
    assert asha.report("a", 3, 0.0) is True  # rung 3 is empty
    assert asha.report("b", 1, 100.0) is True
    assert asha.report("b", 3, -1.0) is False  # below a's 0.0 at rung 3
    assert asha.stopped_at("b") == 3


def test_mode_min(tmp_path):
    asha = make(tmp_path, mode="min")
    assert asha.report("a", 1, 5.0) is True
    assert asha.report("b", 1, 6.0) is False
    assert asha.report("c", 1, 5.0) is True
    assert asha.report("d", 1, 4.0) is True


def test_below_first_rung_records_nothing(tmp_path):
    asha = make(tmp_path, grace_period=10, max_t=100)
    assert asha.report("a", 9, -1e9) is True
    assert asha.rungs() == {}
    assert not (tmp_path / "rungs.jsonl").exists()


def test_jump_past_two_rungs_records_only_the_highest(tmp_path):
    asha = make(tmp_path)
    assert asha.report("a", 10, 1.0) is True
    assert asha.report("a", 12, 2.0) is True  # rungs 1 and 3 are not back-filled
    assert asha.rungs() == {(0, 9): {"a": 1.0}}
    assert asha.report("b", 4, 0.0) is True
    assert asha.report("b", 9, 0.5) is False
    assert asha.stopped_at("b") == 9


def test_repeated_report_gets_the_same_decision_and_one_record(tmp_path):
    asha = make(tmp_path)
    asha.report("a", 1, 5.0)
    assert asha.report("b", 1, 4.0) is False
    assert asha.report("b", 1, 100.0) is False  # requeued: looked up, not re-decided
    assert asha.report("b", 5, 100.0) is False  # stopped trials stay stopped
    assert asha.report("a", 1, -100.0) is True
    assert asha.report("a", 2, -100.0) is True
    assert asha.rungs() == {(0, 1): {"a": 5.0, "b": 4.0}}
    assert len(lines(tmp_path)) == 2
    assert len((tmp_path / "decisions.jsonl").read_text().splitlines()) == 2


def test_int_and_str_trial_ids_are_the_same_trial(tmp_path):
    asha = make(tmp_path)
    asha.report(1, 1, 5.0)
    assert asha.report(2, 1, 4.0) is False
    assert asha.report("2", 1, 9.0) is False
    assert asha.stopped_at("2") == 1
    assert asha.rungs() == {(0, 1): {"1": 5.0, "2": 4.0}}


def test_nan_value_is_not_judged_until_the_first_value(tmp_path):
    asha = make(tmp_path)
    assert asha.report("a", 1, 5.0) is True
    assert asha.report("b", 1, NAN) is True  # no finished episode yet: not judged, not recorded
    assert asha.report("b", 2, NAN) is True
    assert asha.rungs() == {(0, 1): {"a": 5.0}}
    assert asha.report("b", 2, 4.0) is False  # its first value is judged at rung 1
    assert asha.stopped_at("b") == 1
    assert asha.report("b", 3, NAN) is False  # a stopped trial stays stopped
    assert asha.report("c", 1, NAN) is True
    assert asha.report("c", 4, 0.0) is True  # judged at rung 3, which is empty
    assert asha.rungs() == {(0, 1): {"a": 5.0, "b": 4.0}, (0, 3): {"c": 0.0}}
    log = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [(e["trial"], e["rung"], e["frame"]) for e in log] == [
        ("a", 1, 1),
        ("b", 1, 2),
        ("c", 3, 4),
    ]


def test_nan_recorded_by_an_older_version_is_ignored_in_the_cutoff(tmp_path):
    make(tmp_path).report("a", 1, 5.0)
    with open(tmp_path / "rungs.jsonl", "a") as f:
        f.write('{"bracket": 0, "rung": 1, "trial": "old", "value": NaN, "stop": false}\n')
    asha = make(tmp_path)
    assert asha.report("b", 1, 4.9) is False  # cutoff from 5.0 alone
    assert asha.report("c", 1, 5.0) is True


def test_decision_log(tmp_path):
    asha = make(tmp_path)
    asha.report("a", 2, 5.0)
    asha.report("b", 1, 4.0)
    log = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [(e["trial"], e["rung"], e["frame"], e["value"]) for e in log] == [
        ("a", 1, 2, 5.0),
        ("b", 1, 1, 4.0),
    ]
    assert [(e["cutoff"], e["decision"]) for e in log] == [(None, "continue"), (5.0, "stop")]
    assert all(e["time"] for e in log)


def test_new_coordinator_resumes_from_records(tmp_path):
    first = make(tmp_path)
    first.report("a", 1, 5.0)
    first.report("b", 1, 4.0)
    first.report("a", 3, 7.0)
    second = make(tmp_path)
    assert second.rungs() == {(0, 1): {"a": 5.0, "b": 4.0}, (0, 3): {"a": 7.0}}
    assert second.stopped_at("b") == 1
    assert second.report("b", 3, 100.0) is False
    assert second.report("c", 1, 4.6) is False  # 66.7th percentile of 4 and 5 is 4 + 2/3
    assert second.report("d", 1, 4.8) is True  # 4, 4.6, 5: cutoff 4.6 + 0.4 / 3
    assert second.report("a", 3, -1.0) is True
    assert first.rungs() == second.rungs()  # each sees the other's records


def test_other_settings_on_the_same_dir_are_refused(tmp_path):
    make(tmp_path)
    with pytest.raises(ValueError, match="ASHA settings"):
        make(tmp_path, reduction_factor=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "maximize"},
        {"reduction_factor": 1},
        {"max_t": 1},
        {"brackets": 0},
        {"brackets": 4},  # only three rungs below 27
    ],
)
def test_invalid_settings(tmp_path, kwargs):
    with pytest.raises(ValueError):
        make(tmp_path, **kwargs)


def test_brackets(tmp_path):
    # Bracket 0 has rungs 1, 3, 9 and bracket 1 has rungs 3, 9.
    asha = make(tmp_path, brackets=2)
    for trial in range(30):
        asha.report(trial, 1, 0.0)
    at_one = set(asha.rungs().get((0, 1), {}))
    for trial in range(30):
        asha.report(trial, 3, float(trial))
    rungs = asha.rungs()
    assert set(rungs) == {(0, 1), (0, 3), (1, 3)}
    assert set(rungs[(0, 3)]) == at_one
    assert len(rungs[(1, 3)]) == 30 - len(at_one)
    # The same trials land in the same brackets in a new process.
    again = make(tmp_path / "again", brackets=2)
    for trial in range(30):
        again.report(trial, 3, float(trial))
    assert set(again.rungs()[(1, 3)]) == set(rungs[(1, 3)])


def test_torn_last_line_is_skipped(tmp_path):
    asha = make(tmp_path)
    asha.report("a", 1, 5.0)
    asha.report("b", 1, 6.0)
    with open(tmp_path / "rungs.jsonl", "ab") as f:
        f.write(b'{"bracket": 0, "rung": 1, "tri')  # writer died mid-line
    with pytest.warns(UserWarning, match="torn line"):
        assert asha.report("c", 1, 4.0) is False
    with pytest.warns(UserWarning, match="torn line"):
        fresh = make(tmp_path)
        assert fresh.rungs() == {(0, 1): {"a": 5.0, "b": 6.0, "c": 4.0}}
    assert fresh.stopped_at("c") == 1
    assert json.loads(lines(tmp_path)[-1])["trial"] == "c"


@pytest.mark.parametrize("garbage", [b"not json\n", b'{"bracket": 0\n', b"[1, 2]\n", b"{}\n"])
def test_bad_line_in_the_middle_is_skipped(tmp_path, garbage):
    make(tmp_path).report("a", 1, 5.0)
    with open(tmp_path / "rungs.jsonl", "ab") as f:
        f.write(garbage)
    with pytest.warns(UserWarning, match="skipping"):
        make(tmp_path).report("b", 1, 6.0)
    with pytest.warns(UserWarning, match="skipping"):
        fresh = make(tmp_path)
        assert fresh.rungs() == {(0, 1): {"a": 5.0, "b": 6.0}}


def test_clean_files_give_no_warning(tmp_path):
    asha = make(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asha.report("a", 1, 5.0)
        make(tmp_path).rungs()


def fill(asha, n, start=0):
    for i in range(start, start + n):
        asha.report(f"t{i}", 1 + i % 10, float(i % 7))


def test_new_process_starts_from_the_snapshot_and_reads_the_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(_coordinator, "SNAPSHOT_BYTES", 1024)
    fill(make(tmp_path), 60)
    snapshot = json.loads((tmp_path / "rungs.snapshot.json").read_text())
    size = (tmp_path / "rungs.jsonl").stat().st_size
    assert 0 < size - snapshot["offset"] < 1024  # the last one written, a tail after it
    fresh = make(tmp_path)
    fresh._load_snapshot()
    assert fresh._rungs_file.offset == snapshot["offset"]
    fill(fresh, 5, start=60)
    (tmp_path / "rungs.snapshot.json").unlink()
    full = make(tmp_path)  # from rungs.jsonl alone
    assert fresh.rungs() == full.rungs()
    assert list(fresh.rungs()[(0, 1)]) == list(full.rungs()[(0, 1)])  # arrival order kept
    for i in range(65):
        assert fresh.stopped_at(f"t{i}") == full.stopped_at(f"t{i}")
        assert fresh.report(f"t{i}", 1 + i % 10, -1.0) == full.report(f"t{i}", 1 + i % 10, 9.0)


@pytest.mark.parametrize(
    "text", ["", "{not json", '{"offset": 1}', '{"offset": 999999, "rungs": [], "stopped": {}}']
)
def test_unsound_snapshot_is_ignored(tmp_path, text):
    asha = make(tmp_path)
    asha.report("a", 1, 5.0)
    (tmp_path / "rungs.snapshot.json").write_text(text)
    with pytest.warns(UserWarning, match="snapshot.json: ignored"):
        fresh = make(tmp_path)
        assert fresh.rungs() == {(0, 1): {"a": 5.0}}
    assert fresh.report("b", 1, 4.0) is False
